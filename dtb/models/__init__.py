"""Built-in networks."""

from dtb.models.microcircuit import microcircuit

BUILTIN = {"microcircuit": microcircuit}

__all__ = ["BUILTIN", "microcircuit"]
