"""Batch analysis of large folders of recordings into Parquet, locally or on a Ray cluster.

>>> from vocalis.batch import BatchSpec, find_audio, run_batch
>>> # summary = run_batch(find_audio(["calls/"]), "out.parquet", BatchSpec(), engine="local")

Both engines run the same :class:`Analyser` (``vocalis.load_audio`` -> the bundle's feature
extractor -> batched ONNX inference -> calibrated probabilities, valence, arousal) and write the same
rows: ``file, duration_s, label, prob_<label>…, valence, arousal, speech_detected, voiced_s, error``. Needs the extra ``batch``
(pyarrow); the Ray engine needs ``ray``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vocalis.batch.core import (
    Analyser,
    BatchSpec,
    BatchSummary,
    ParquetSink,
    Progress,
    decode,
    find_audio,
    prob_column,
    schema,
)
from vocalis.errors import ConfigError

ENGINES = ("local", "ray")


def check_engine(engine: str, ray_address: str | None = None) -> None:
    """Raise :class:`ConfigError` for an unknown engine or a Ray address without the Ray engine."""
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} must be one of {', '.join(map(repr, ENGINES))}")
    if ray_address is not None and engine != "ray":
        raise ConfigError(f"ray_address={ray_address!r} needs engine='ray'")


def run_batch(files: Sequence[str], out: str | Path, spec: BatchSpec | None = None, *, engine: str = "local",
              workers: int = 0, ray_address: str | None = None, progress: Progress | None = None) -> BatchSummary:
    """Analyse ``files`` into ``out`` with ``engine`` (``local`` or ``ray``); see the engine modules."""
    check_engine(engine, ray_address)
    if engine == "local":
        from vocalis.batch.local import analyse_local

        return analyse_local(files, out, spec, workers=workers, progress=progress)
    from vocalis.batch.ray_engine import analyse_ray

    return analyse_ray(files, out, spec, workers=workers, address=ray_address, progress=progress)


__all__ = [
    "ENGINES", "Analyser", "BatchSpec", "BatchSummary", "ParquetSink", "Progress", "check_engine", "decode",
    "find_audio",
    "prob_column", "run_batch", "schema",
]
