"""Shared test configuration: markers and small helpers."""

from __future__ import annotations

import numba
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "mpi: needs mpi4py and an MPI launcher")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU")


@pytest.fixture(autouse=True)
def restore_threads():
    """Put numba's thread count back after every test (Engine(threads=...) changes it)."""
    n = numba.get_num_threads()
    yield n
    numba.set_num_threads(n)
