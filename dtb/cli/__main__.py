"""``python -m dtb.cli ARGS``: exactly ``dtb ARGS`` (e.g. under an ``mpiexec`` that cannot
find the ``dtb`` script)."""

import sys

from dtb.cli.main import main

sys.exit(main())
