"""The ``dtb`` command line: one module per command; ``dtb.cli.main.main.main`` is the entry
point.  The library (everything outside this package) never imports it."""
