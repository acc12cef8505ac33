"""Exit statuses of the ``dtb`` command, in one place, and the signals that end a run.

0 success; 1 an error (output directory, runtime failure); 2 an invalid configuration,
argument or input (argparse uses 2 as well); 75 (EX_TEMPFAIL) a checkpoint was written on
request and the run stopped: resume it; 128 + N killed by signal N; 130 interrupted."""

from __future__ import annotations

import signal
from typing import Any

EXIT_ERROR = 1
EXIT_USAGE = 2  # invalid configuration or arguments (argparse uses 2 as well)
EXIT_TEMPFAIL = 75  # a checkpoint was written on request and the run stopped: resume it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # dtb simulate: checkpoint and stop


class Terminated(BaseException):
    """SIGTERM arrived (a batch system's time limit or scancel): the run is marked failed."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)
