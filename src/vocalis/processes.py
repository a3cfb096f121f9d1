"""Worker processes: each one single-threaded, so N workers on N cores do not oversubscribe them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: Set (unless already set) while worker processes start. A spawned child imports NumPy before any
#: initializer runs, so setting these inside the child is too late: OpenBLAS would start one thread
#: per core in every worker (two workers on two cores lost ~17 % of the triage benchmark's time).
CHILD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Processes started inside this block run single-threaded BLAS/OpenMP (the parent is unchanged)."""
    added = [k for k in CHILD_ENV if k not in os.environ]
    for k in added:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
