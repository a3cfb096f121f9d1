"""What both engines share: finding the files, decoding, one batched prediction, the row schema
and the incremental Parquet writer.

A row per file: ``file, duration_s, label, prob_<label>…, valence, arousal, error``. A file that
cannot be decoded (or whose features fail) is a row with ``error`` set and the rest null; it
never stops the run. A broken *model* does stop it (:class:`~vocalis.errors.ModelError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.audio.constants import DEFAULT_MAX_DURATION_S, SAMPLE_RATE
from vocalis.audio.io import check_audible, load_audio
from vocalis.audio.vad import SpeechPresence, speech_presence
from vocalis.bundle import Bundle, load_bundle
from vocalis.corpora.folders import AUDIO_EXTENSIONS, iter_audio_files
from vocalis.errors import ConfigError, DataError, VocalisError, require

#: ``progress(stage, done, total)``; the library never prints, the CLI draws the bar.
Progress = Callable[[str, int, int], None]
STAGE = "analyse"
MAX_ERRORS_KEPT = 20


def _pa() -> Any:
    return require("pyarrow", "batch")


def find_audio(inputs: Sequence[str | Path]) -> list[str]:
    """Absolute paths of the audio files among ``inputs``: files as given, folders searched recursively
    for ``AUDIO_EXTENSIONS`` (hidden entries skipped), sorted per folder, de-duplicated."""
    if not inputs:
        raise DataError("input=[] must name at least one file or folder")
    out: list[str] = []
    seen: set[str] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found: Iterable[Path] = iter_audio_files(p, AUDIO_EXTENSIONS)
        elif p.is_file():
            found = [p]
        else:
            raise DataError(f"input={str(p)!r} does not exist (give audio files or folders)")
        for f in found:
            a = os.path.abspath(f)
            key = os.path.realpath(a)
            if key not in seen:
                seen.add(key)
                out.append(a)
    if not out:
        raise DataError(f"input={[str(i) for i in inputs]} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return out


@dataclass(frozen=True)
class BatchSpec:
    """What a worker (process or Ray actor) needs to rebuild the analyser: plain, picklable data."""

    model: str | None = None
    max_duration: float | None = DEFAULT_MAX_DURATION_S
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.max_duration is not None and not (self.max_duration > 0 and np.isfinite(self.max_duration)):
            raise ConfigError(f"max_duration={self.max_duration} must be a positive number of seconds")
        if not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 4096):
            raise ConfigError(f"batch_size={self.batch_size} must be an integer between 1 and 4096")

    def build(self) -> Analyser:
        return Analyser(load_bundle(self.model, threads=1), self.max_duration)


def decode(path: str, max_duration: float | None) -> tuple[np.ndarray | None, str | None]:
    """``(audio, None)`` or ``(None, error message)``; the one decoder (:func:`vocalis.load_audio`)."""
    try:
        return load_audio(path, SAMPLE_RATE, max_duration=max_duration), None
    except VocalisError as e:
        return None, str(e)
    except Exception as e:  # never let one odd file end a run over a million
        return None, f"{path}: cannot decode audio ({type(e).__name__}: {e})"


def prob_column(label: str) -> str:
    return f"prob_{label}"


def schema(labels: Sequence[str], metadata: dict[str, str] | None = None) -> Any:
    """The Arrow schema of the output rows."""
    pa = _pa()
    fields = [pa.field("file", pa.string(), nullable=False), pa.field("duration_s", pa.float64()),
              pa.field("label", pa.string())]
    fields += [pa.field(prob_column(lab), pa.float64()) for lab in labels]
    fields += [pa.field("valence", pa.float64()), pa.field("arousal", pa.float64()),
               pa.field("speech_detected", pa.bool_()), pa.field("voiced_s", pa.float64()),
               pa.field("error", pa.string())]
    return pa.schema(fields, metadata=metadata)


class Analyser:
    """Features and batched ONNX inference of one bundle over decoded clips (one per worker)."""

    def __init__(self, bundle: Bundle, max_duration: float | None = DEFAULT_MAX_DURATION_S) -> None:
        self.bundle = bundle
        self.max_duration = max_duration
        self.labels = bundle.labels
        sha = bundle.manifest.files.get("model.onnx", {}).get("sha256", "")
        self.schema = schema(self.labels, {"vocalis.model": bundle.source, "vocalis.model_sha256": sha,
                                           "vocalis.labels": json.dumps(self.labels)})

    def predict(self, files: Sequence[str], audios: Sequence[np.ndarray | None],
                errors: Sequence[str | None]) -> Any:
        """An Arrow table, one row per file, in order. ``audios[i]`` is None where ``errors[i]`` says why."""
        n = len(files)
        errs = list(errors)
        feats: dict[int, np.ndarray] = {}
        speech: dict[int, SpeechPresence] = {}
        for i, x in enumerate(audios):
            if x is None or errs[i] is not None:
                continue
            try:
                feats[i] = self.bundle.features(check_audible(x, files[i]), SAMPLE_RATE)
                speech[i] = speech_presence(x, SAMPLE_RATE)  # what `vocalis predict` says of it
            except VocalisError as e:
                errs[i] = f"{files[i]}: {e}"
            except Exception as e:
                errs[i] = f"{files[i]}: feature extraction failed ({type(e).__name__}: {e})"
        proba: dict[int, np.ndarray] = {}
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, f in feats.items():  # sequence features of different lengths go in separate calls
            by_shape.setdefault(f.shape, []).append(i)
        for idx in by_shape.values():
            p = self.bundle.predict_proba_features(np.stack([feats[i] for i in idx]))  # ModelError ends the run
            proba.update(zip(idx, p))
        cols: dict[str, list[Any]] = {"file": list(files), "duration_s": [], "label": []}
        cols.update({prob_column(lab): [] for lab in self.labels})
        cols.update(valence=[], arousal=[], speech_detected=[], voiced_s=[], error=[])
        for i in range(n):
            x = audios[i]
            cols["duration_s"].append(round(x.size / SAMPLE_RATE, 6) if x is not None else None)
            if i in proba:
                pred = self.bundle.prediction_from_proba(proba[i])
                cols["label"].append(pred.label)
                for lab in self.labels:
                    cols[prob_column(lab)].append(pred.probabilities[lab])
                cols["valence"].append(pred.valence)
                cols["arousal"].append(pred.arousal)
                sp = speech.get(i)
                cols["speech_detected"].append(None if sp is None else sp.detected)
                cols["voiced_s"].append(None if sp is None else sp.voiced_s_if_known)
                cols["error"].append(None)
            else:
                for k in ("label", "valence", "arousal", "speech_detected", "voiced_s",
                          *(prob_column(lab) for lab in self.labels)):
                    cols[k].append(None)
                cols["error"].append(errs[i] or f"{files[i]}: no prediction")
        return _pa().Table.from_pydict(cols, schema=self.schema)

    def analyse_paths(self, files: Sequence[str]) -> Any:
        decoded = [decode(f, self.max_duration) for f in files]
        return self.predict(files, [a for a, _ in decoded], [e for _, e in decoded])


@dataclass
class BatchSummary:
    """What a run did. ``audio_hours_per_hour`` equals the real-time factor (audio seconds per second)."""

    engine: str
    out: str
    workers: int
    files: int = 0
    ok: int = 0
    failed: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def add(self, table: Any) -> int:
        """Count one output table's rows; returns how many it had."""
        d = table.select(["file", "duration_s", "error"]).to_pydict()
        for f, dur, err in zip(d["file"], d["duration_s"], d["error"]):
            self.files += 1
            if err is None:
                self.ok += 1
                self.audio_s += float(dur or 0.0)
            else:
                self.failed += 1
                if len(self.errors) < MAX_ERRORS_KEPT:
                    self.errors.append({"file": f, "error": err})
        return int(table.num_rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"audio_s": round(self.audio_s, 3), "wall_s": round(self.wall_s, 3),
                               "files_per_s": round(self.files_per_s, 3),
                               "audio_hours_per_hour": round(self.audio_hours_per_hour, 1)}


def is_folder_target(out: str | Path) -> bool:
    """``out`` names a folder (ends with a path separator, or is an existing folder)."""
    s = str(out)
    return s.endswith(("/", os.sep)) or Path(s).is_dir()


class ParquetSink:
    """Writes Arrow tables to one Parquet file in row groups of ``row_group_size`` rows as they come
    (memory stays bounded), under a temporary name that replaces ``path`` only when closed cleanly."""

    def __init__(self, path: str | Path, schema: Any, row_group_size: int = 1024) -> None:
        pq: Any = require("pyarrow.parquet", "batch")
        self.path = Path(path)
        if is_folder_target(path):
            raise ConfigError(f"out={str(path)!r} is a folder; this writer needs a file name such as "
                              f"{str(self.path / 'results.parquet')!r} (only engine='ray' writes part files into a folder)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self.schema = schema
        self.row_group_size = row_group_size
        self._pending: list[Any] = []
        self._rows = 0
        self._writer = pq.ParquetWriter(str(self._tmp), schema)

    def write(self, table: Any) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(table.cast(self.schema) if table.schema != self.schema else table)
        self._rows += table.num_rows
        if self._rows >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            t = _pa().concat_tables(self._pending)
            self._writer.write_table(t, row_group_size=self.row_group_size)
        self._pending, self._rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
