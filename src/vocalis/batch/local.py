"""The local engine: ``workers`` processes (one single-threaded analyser each) over chunks of files,
rows written to one Parquet file as the chunks come back, in input order.

At most ``2 * workers`` chunks are in flight, so memory does not grow with the folder's size.
``workers=1`` runs in this process (no pool).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from vocalis.batch.core import STAGE, Analyser, BatchSpec, BatchSummary, ParquetSink, Progress
from vocalis.errors import ConfigError
from vocalis.processes import single_threaded_children

_worker: Analyser | None = None


def _init(spec: BatchSpec) -> None:
    global _worker
    _worker = spec.build()


def _analyse(files: list[str]) -> Any:
    assert _worker is not None
    return _worker.analyse_paths(files)


def _chunks(files: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(files), size):
        yield list(files[i:i + size])


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def analyse_local(files: Sequence[str], out: str | Path, spec: BatchSpec | None = None, *,
                  workers: int = 0, progress: Progress | None = None, row_group_size: int = 1024) -> BatchSummary:
    """Analyse ``files`` into the Parquet file ``out`` on ``workers`` processes (0 = one per core)."""
    spec = spec or BatchSpec()
    if workers < 0:
        raise ConfigError(f"workers={workers} must be >= 0 (0 = one per CPU core)")
    n_workers = max(1, min(workers or default_workers(), len(files)))
    size = max(1, min(spec.batch_size, -(-len(files) // n_workers)))  # small runs still use every worker
    t0 = time.perf_counter()
    analyser = spec.build()  # fails fast on a bad model, before any worker starts
    summary = BatchSummary(engine="local", out=str(out), workers=n_workers)
    total = len(files)
    with ParquetSink(out, analyser.schema, row_group_size=row_group_size) as sink:
        def take(table: Any) -> None:
            sink.write(table)
            summary.add(table)
            if progress:
                progress(STAGE, summary.files, total)

        if progress:
            progress(STAGE, 0, total)
        if n_workers == 1:
            for part in _chunks(files, size):
                take(analyser.analyse_paths(part))
        else:
            del analyser
            with single_threaded_children(), ProcessPoolExecutor(
                    max_workers=n_workers, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(spec,)) as pool:
                pending: deque[Future[Any]] = deque()
                for part in _chunks(files, size):
                    pending.append(pool.submit(_analyse, part))
                    if len(pending) >= 2 * n_workers:
                        take(pending.popleft().result())
                while pending:
                    take(pending.popleft().result())
    summary.wall_s = time.perf_counter() - t0
    return summary
