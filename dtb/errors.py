"""The exceptions dtb raises.  Every message names where the problem is and what was expected."""

from __future__ import annotations

MAX_LISTED = 50  # problems a ConfigError lists (its header gives the exact count)


class DtbError(Exception):
    """Base class of every error dtb raises on purpose.

    ``cli_text``: the same message as the command line says it, naming its flags
    (``--overwrite``) where the message names a Python argument (``overwrite=True``); None
    when the message names neither.  Set with ``on_command_line``; ``dtb.cli.main`` prints
    ``command_line_message(e)``."""

    cli_text: str | None = None

    def on_command_line(self, text: str) -> DtbError:
        """Attach the command line's wording of this error; returns the error."""
        self.cli_text = text
        return self


class ConfigError(DtbError, ValueError):
    """An invalid network or simulation configuration, found before anything is built.

    ``problems`` holds one line per offending field: ``"<source>: <path>: <value> -- <expected>"``.
    """

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        plural = "s" if len(problems) != 1 else ""
        head = f"{where}invalid configuration ({len(problems)} problem{plural})"
        shown = self.problems[:MAX_LISTED]
        if len(self.problems) > MAX_LISTED:
            shown.append(f"... and {len(self.problems) - MAX_LISTED} more")
        super().__init__(head + "\n  " + "\n  ".join(shown))


class UsageError(ConfigError):
    """An invalid command-line value (exit status 2), worded ``--flag: value -- expected``:
    a configuration error of one problem whose message is that problem alone."""

    def __init__(self, message: str):
        super().__init__([message])
        self.args = (message,)


class OutputError(DtbError, OSError):
    """The run directory cannot be written (exists, read-only, disk full)."""


class InputError(DtbError, ValueError):
    """An input file (imaging, connectome, table, brain specification) that cannot be used.

    Names the file, the field (column, dataset, label or header entry), the offending value
    and what was expected.
    """

    def __init__(self, path: str, field: str | None, value: object, expected: str,
                 message: str | None = None):
        self.path, self.field, self.value, self.expected = str(path), field, value, expected
        where = f"{path}" + (f": {field}" if field else "")
        # ``message``: a subclass's own wording of the whole problem (it names the same)
        super().__init__(f"{where}: {value!r} -- expected {expected}" if message is None
                         else message)


class ArgumentError(DtbError, ValueError):
    """A value a library function cannot use: an argument out of its range or of the wrong
    shape, or a state (from a checkpoint) that belongs to another run or rank.  Worded
    ``<argument>: <value> -- expected <what>``.  Not a configuration or an input file the
    user named (ConfigError, InputError: exit status 2): the command line reports it with
    exit status 1, as a failure of the run."""

    def __init__(self, message: str):
        super().__init__(message)


class ModelError(DtbError, ArithmeticError):
    """The model cannot go on from its state: for example a hemodynamic state so far from
    any physiological one that integrating it would take unbounded time.  Names where
    (TR, region or unit) and the state found there.

    ``tr``: the TR it happened in, ``unit``: the index of the unit (for an ensemble,
    (member, unit)); None where not known."""

    tr: int | None = None
    unit: tuple[int, ...] | None = None


def command_line_message(e: BaseException) -> str:
    """The message of ``e`` as the command line shows it (its own wording, if it has one)."""
    text = getattr(e, "cli_text", None)
    return text if text is not None else str(e)
