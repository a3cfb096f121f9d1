"""Worker processes start single-threaded (vocalis.processes), and the parent's environment is restored."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from vocalis.processes import CHILD_ENV, single_threaded_children


def _child_env() -> dict[str, str | None]:
    import numpy  # noqa: F401  (imported before any initializer could act, as in a real worker)

    return {k: os.environ.get(k) for k in CHILD_ENV}


def test_spawned_workers_run_single_threaded_and_the_parent_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in CHILD_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # a user's own setting wins
    with single_threaded_children(), ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        seen = pool.submit(_child_env).result(timeout=120)
    assert seen == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "3"}
    assert "OMP_NUM_THREADS" not in os.environ and "OPENBLAS_NUM_THREADS" not in os.environ
    assert os.environ["MKL_NUM_THREADS"] == "3"
