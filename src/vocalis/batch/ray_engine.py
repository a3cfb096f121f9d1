"""The Ray engine: the same analyser as the local engine, run by Ray Data across a cluster.

Pipeline (logical stages)::

    from_items(paths)                       read: one row per file, in blocks of batch_size
      -> map_batches(_decode_batch)         decode + resample to 16 kHz mono (vocalis.load_audio)
      -> map_batches(_Predictor, compute=ActorPoolStrategy(size=workers))
                                            features + ONNX inference; each actor loads the bundle once
      -> one Parquet file written by the driver as results stream in (``out=X.parquet``)
         or ``Dataset.write_parquet(DIR)`` by the workers, a folder of part files (``out=DIR/``)

Ray fuses the decode stage into the actor stage when their resources match (they do), so decoded
audio never crosses the object store. Every node must see the input paths (a shared file system,
or the same layout on each node) and have ``vocalis[ray]`` of the same version installed.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.batch.core import (
    STAGE,
    Analyser,
    BatchSpec,
    BatchSummary,
    ParquetSink,
    Progress,
    decode,
    is_folder_target,
)
from vocalis.errors import ConfigError, require

#: Object store of a local instance started here (the results are small; blocks are streamed).
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2


def _decode_batch(batch: Any, max_duration: float | None) -> Any:
    import pyarrow as pa

    files = batch.column("file").to_pylist()
    audio: list[bytes | None] = []
    errors: list[str | None] = []
    for f in files:
        x, err = decode(f, max_duration)
        audio.append(None if x is None else x.astype(np.float32, copy=False).tobytes())
        errors.append(err)
    return pa.table({"file": pa.array(files, pa.string()), "audio": pa.array(audio, pa.large_binary()),
                     "error": pa.array(errors, pa.string())})


class _Predictor:
    """A Ray Data actor: loads the bundle once, then predicts batch after batch."""

    def __init__(self, spec: BatchSpec) -> None:
        self.analyser: Analyser = spec.build()

    def __call__(self, batch: Any) -> Any:
        audios = [None if b is None else np.frombuffer(b, dtype=np.float32)
                  for b in batch.column("audio").to_pylist()]
        return self.analyser.predict(batch.column("file").to_pylist(), audios, batch.column("error").to_pylist())


@contextmanager
def _quiet_ray_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Ray's INFO/WARNING chatter (token-auth notice, "progress bars disabled", run stats) off for the run."""
    loggers = [logging.getLogger(n) for n in ("ray", "ray.data")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, before):
            lg.setLevel(lv)


def _connect(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a local instance; True when this call started Ray."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                          "configure_logging": False}
    if address is None:
        kw |= {"num_cpus": num_cpus, "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
    try:
        ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"ray_address={address!r}: cannot start or connect to Ray ({e})") from e
    return True


def analyse_ray(files: Sequence[str], out: str | Path, spec: BatchSpec | None = None, *, workers: int = 0,
                address: str | None = None, progress: Progress | None = None,
                row_group_size: int = 1024) -> BatchSummary:
    """Analyse ``files`` on Ray into ``out`` (one Parquet file, or a folder of part files for ``DIR/``).

    ``address`` is a Ray cluster (``auto`` on a cluster node or in a Ray Job, ``host:6379``, or a
    Ray Client ``ray://host:10001``); ``None`` starts a
    local instance with ``workers`` CPUs (0 = all cores) and stops it afterwards. An already
    initialised Ray (``ray.init`` by the caller) is used as it is and left running. ``workers`` is
    the number of predictor actors (0 = one per CPU of the cluster).
    """
    spec = spec or BatchSpec()
    if workers < 0:
        raise ConfigError(f"workers={workers} must be >= 0 (0 = one per CPU)")
    ray: Any = require("ray", "ray")
    require("ray.data", "ray")
    to_folder = is_folder_target(out)
    if to_folder and Path(out).is_dir() and any(Path(out).iterdir()):
        raise ConfigError(f"out={str(out)!r} is a folder that is not empty; Ray writes its part files into a new "
                          "or empty folder (or give a file name such as results.parquet)")
    t0 = time.perf_counter()
    analyser = spec.build()  # fails fast on a bad model; gives the schema
    with _quiet_ray_logs():
        summary = _run(ray, files, out, spec, analyser, to_folder, workers, address, progress, row_group_size)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _run(ray: Any, files: Sequence[str], out: str | Path, spec: BatchSpec, analyser: Analyser, to_folder: bool,
         workers: int, address: str | None, progress: Progress | None, row_group_size: int) -> BatchSummary:
    started = _connect(ray, address, workers or (os.cpu_count() or 1))
    ctx = ray.data.DataContext.get_current()
    saved = {k: getattr(ctx, k) for k in ("enable_progress_bars", "print_on_execution_start", "enable_auto_log_stats")}
    saved_order = ctx.execution_options.preserve_order
    try:
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        ctx.execution_options.preserve_order = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_actors = max(1, min(workers or cpus, len(files)))
        size = max(1, min(spec.batch_size, math.ceil(len(files) / n_actors)))  # small runs still use every actor
        summary = BatchSummary(engine="ray", out=str(out), workers=n_actors)
        # more actors than the cluster has CPUs now: start what fits, grow if it autoscales
        pool = (ray.data.ActorPoolStrategy(size=n_actors) if n_actors <= cpus
                else ray.data.ActorPoolStrategy(min_size=max(1, cpus), max_size=n_actors))
        ds = ray.data.from_items([{"file": f} for f in files], override_num_blocks=math.ceil(len(files) / size))
        ds = ds.map_batches(_decode_batch, fn_kwargs={"max_duration": spec.max_duration}, batch_format="pyarrow",
                            batch_size=size, num_cpus=1)
        ds = ds.map_batches(_Predictor, fn_constructor_kwargs={"spec": spec}, batch_format="pyarrow",
                            batch_size=size, num_cpus=1, compute=pool)
        total = len(files)
        if progress:
            progress(STAGE, 0, total)
        if to_folder:
            folder = Path(out)
            folder.mkdir(parents=True, exist_ok=True)
            ds.write_parquet(str(folder))
            pq: Any = require("pyarrow.parquet", "batch")
            summary.add(pq.read_table(str(folder), columns=["file", "duration_s", "error"]))
            if progress:
                progress(STAGE, summary.files, total)
        else:
            with ParquetSink(out, analyser.schema, row_group_size=row_group_size) as sink:
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                    sink.write(batch)
                    summary.add(batch)
                    if progress:
                        progress(STAGE, summary.files, total)
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        ctx.execution_options.preserve_order = saved_order
        if started:
            ray.shutdown()
    return summary

