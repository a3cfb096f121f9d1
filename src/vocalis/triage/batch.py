"""Triage many calls: in-process or on ``jobs`` worker processes (one analyser and one core each).

Whisper decoding gains little from a second thread, so two single-threaded workers on two cores
analyse nearly twice as many calls per second as one two-threaded analyser.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vocalis.corpora.folders import AUDIO_EXTENSIONS, iter_audio_files
from vocalis.errors import ConfigError, DataError, VocalisError
from vocalis.processes import single_threaded_children
from vocalis.triage.call import CallAnalyzer, TriageConfig
from vocalis.triage.lexicon import GravityLexicon

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AnalyzerSpec:
    """What a worker needs to build its own :class:`CallAnalyzer` (plain data, sent to workers)."""

    model: str | None = None
    asr_model: str | None = "tiny.en"
    lexicon: dict[str, Any] | None = None
    config: TriageConfig | None = None
    language: str | None = "en"
    threads: int = 1
    scream_model: str | bool | None = None  # None = the bundled two-stage detector, False = none
    asr_encoder: str = "onnx"
    asr_decoder: str = "onnx"
    scream_confirm_model: str | None = None  # with a scream_model path: its second stage (vocalis.danger.detector)

    def build(self) -> CallAnalyzer:
        lex = GravityLexicon.from_dict(self.lexicon) if self.lexicon is not None else None
        scream: Any = self.scream_model
        if self.scream_confirm_model is not None:
            from vocalis.danger.detector import load_scream_detector

            if not isinstance(self.scream_model, str):
                raise ConfigError(f"scream_confirm_model={self.scream_confirm_model!r} needs a scream_model path, "
                                  f"not {self.scream_model!r}")
            scream = load_scream_detector(self.scream_model, self.scream_confirm_model)
        return CallAnalyzer(self.model, asr_model=self.asr_model, lexicon=lex, config=self.config,
                            threads=self.threads, language=self.language, scream_model=scream,
                            asr_encoder=self.asr_encoder, asr_decoder=self.asr_decoder)


def find_calls(inputs: Sequence[str | Path]) -> list[Path]:
    """Audio files among ``inputs`` (files, or folders searched recursively), sorted, de-duplicated."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(iter_audio_files(p, AUDIO_EXTENSIONS))  # hidden entries skipped, as in batch
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"calls={p} does not exist")
    seen: set[Path] = set()
    uniq: list[Path] = []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            uniq.append(f)
    if not uniq:
        raise DataError(f"calls={[str(i) for i in inputs]} hold no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return uniq


_worker: CallAnalyzer | None = None


def _init(spec: AnalyzerSpec) -> None:
    global _worker
    _worker = spec.build()


def _analyse(path: str, call_id: str) -> tuple[str, dict[str, Any] | None, str | None]:
    assert _worker is not None
    try:
        return path, _worker.analyse_file(path, call_id=call_id).to_dict(), None
    except VocalisError as e:
        return path, None, str(e)


def _call_ids(files: Sequence[Path]) -> list[str]:
    stems = [f.stem for f in files]
    return [str(f) if stems.count(f.stem) > 1 else f.stem for f in files]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # reported by the worker that opens it
        return 0


def triage_files(files: Sequence[Path], spec: AnalyzerSpec, *, jobs: int = 1,
                 progress: Progress | None = None) -> Iterator[tuple[Path, dict[str, Any] | None, str | None]]:
    """Yield ``(file, report dict or None, error or None)`` as calls finish (any order)."""
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} must be >= 1")
    ids = _call_ids(files)
    total = len(files)
    if jobs == 1 or total == 1:
        _init(spec)
        for n, (f, cid) in enumerate(zip(files, ids), 1):
            _, rep, err = _analyse(str(f), cid)
            if progress:
                progress("triage", n, total)
            yield f, rep, err
        return
    with single_threaded_children(), ProcessPoolExecutor(max_workers=min(jobs, total),
                                                         mp_context=mp.get_context("spawn"),
                                                         initializer=_init, initargs=(spec,)) as pool:
        # largest files first: the pool then ends with short calls, not one long call on one core
        order = sorted(range(total), key=lambda i: -_size(files[i]))
        futs: dict[Future[tuple[str, dict[str, Any] | None, str | None]], Path] = {
            pool.submit(_analyse, str(files[i]), ids[i]): files[i] for i in order
        }
        for n, fut in enumerate(as_completed(futs), 1):
            _, rep, err = fut.result()
            if progress:
                progress("triage", n, total)
            yield futs[fut], rep, err
