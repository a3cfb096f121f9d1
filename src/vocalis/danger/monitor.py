"""Monitoring loops: a file (simulated stream) or the microphone through StreamingPredictor + DangerPolicy.

Both yield plain dicts, each with ``"type"`` and ``"t"`` (seconds of stream time):

* ``{"type": "window", "t": t_end, "t_start", "probabilities", "voice", "scream", "scream_backbone", "risk",
  "keywords", "level_db", "gain_db", "level_ref_db", ...}`` (``scream_backbone``: the second scream head's held score,
  ``null`` when none; ``gain_db``: the slow level gain the scream detector heard the window at, 0 when
  off) once per hop;
* the policy's events: ``{"type": "danger.started" | "countdown" | "alert" | "cancelled" | "danger.ended", "t", ...}``.

Nothing is sent anywhere: acting on an ``alert`` is the caller's job.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import load_audio
from vocalis.bundle.runtime import Bundle
from vocalis.danger.detector import ScreamDetector
from vocalis.danger.policy import DangerPolicy, PolicyConfig
from vocalis.errors import ConfigError, DependencyError, require
from vocalis.streaming.predictor import StreamConfig, StreamingPredictor, WindowResult

MAX_FILE_S = 24 * 3600.0
"""Longest file :func:`monitor_file` decodes (it decodes the whole file first)."""


def _blas_single_thread() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """Context factory limiting BLAS to one thread around each push (when threadpoolctl is installed).

    The per-window matrices are small; on a busy machine a multi-threaded OpenBLAS spends far more
    time synchronising threads than computing (measured: 25 ms instead of 0.6 ms per window).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext
    return lambda: threadpool_limits(1, user_api="blas")


def window_dict(w: WindowResult, risk: float) -> dict[str, Any]:
    """The ``"window"`` record of one window."""
    d: dict[str, Any] = {
        "type": "window",
        "t": w.t_end,
        "t_start": w.t_start,
        "probabilities": w.probabilities,
        "voice": w.voice,
        "scream": w.scream,
        "scream_backbone": w.scream_backbone,
        "risk": round(risk, 4),
        "keywords": list(w.keywords),
        "voice_model": w.voice_model,
        "level_db": w.level_db,
        "gain_db": w.gain_db,
        "level_ref_db": w.level_ref_db,
    }
    if w.transcript is not None:
        d["transcript"] = w.transcript
    return d


def _policy_config(policy_config: PolicyConfig | Mapping[str, Any] | None) -> PolicyConfig:
    if policy_config is None:
        return PolicyConfig()
    if isinstance(policy_config, PolicyConfig):
        return policy_config
    return PolicyConfig.from_dict(policy_config)


def _run(predictor: StreamingPredictor, policy: DangerPolicy, results: list[WindowResult]) -> Iterator[dict[str, Any]]:
    for w in results:
        events = policy.push(w)
        yield window_dict(w, policy.last_risk)
        for e in events:
            yield e.to_dict()


def _check_chunk(chunk_s: float) -> None:
    if not (isinstance(chunk_s, (int, float)) and 0.01 <= chunk_s <= 10.0):
        raise ConfigError(f"chunk_s={chunk_s!r} must be between 0.01 and 10 seconds")


def _pipeline(stream_config: StreamConfig | None, emotion_model: Any, scream_model: Any, keyword_spotter: Any,
              policy_config: PolicyConfig | Mapping[str, Any] | None) -> tuple[StreamingPredictor, DangerPolicy]:
    """The predictor and policy every monitor entry point runs (same models, same rules).

    A scream detector given here (not the packaged one) brings its own operating point
    (``metrics.operating_point`` of its deciding stage) as ``on_threshold``, unless
    ``policy_config`` is a :class:`PolicyConfig` or names ``on_threshold`` itself: the packaged
    default threshold belongs to the packaged detector."""
    predictor = StreamingPredictor(stream_config, emotion_model=emotion_model, scream_model=scream_model,
                                   keyword_spotter=keyword_spotter)
    cfg = _policy_config(policy_config)
    op = predictor.scream.operating_point
    explicit = isinstance(policy_config, PolicyConfig) or (
        isinstance(policy_config, Mapping) and "on_threshold" in policy_config)
    if scream_model is not None and op is not None and not explicit:
        cfg = cfg.at_threshold(op)
    return predictor, DangerPolicy(cfg)


def monitor_file(
    path: str | Path,
    *,
    speed: float = 0.0,
    chunk_s: float = 0.1,
    emotion_model: Bundle | str | Any = None,
    scream_model: ScreamDetector | Bundle | str | None = None,
    policy_config: PolicyConfig | Mapping[str, Any] | None = None,
    stream_config: StreamConfig | None = None,
    keyword_spotter: Any = None,
) -> Iterator[dict[str, Any]]:
    """Stream the audio file ``path`` in ``chunk_s`` pieces and yield window and event dicts.

    ``speed``: 0 = as fast as possible; 1 = real time; 2 = twice real time (sleeps between chunks).
    ``emotion_model``: bundle / path, ``None`` = the default model, ``False`` = no emotion.
    After the last chunk the countdown of a pending alert is run out (the clock advances to its
    deadline), so an alert is never lost because the file ended, and an open danger episode ends
    (``danger.ended``, reason ``"end of stream"``).
    """
    if not (isinstance(speed, (int, float)) and 0.0 <= speed < float("inf")):
        raise ConfigError(f"speed={speed!r} must be >= 0 (0 = as fast as possible, 1 = real time)")
    _check_chunk(chunk_s)
    x = load_audio(path, SAMPLE_RATE, max_duration=MAX_FILE_S)
    predictor, policy = _pipeline(stream_config, emotion_model, scream_model, keyword_spotter, policy_config)
    step = max(1, round(chunk_s * SAMPLE_RATE))
    limit = _blas_single_thread()
    start = time.monotonic()
    for i in range(0, x.size, step):
        chunk = x[i : i + step]
        if speed > 0:
            due = start + (i + chunk.size) / SAMPLE_RATE / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        with limit():
            results = predictor.push(chunk, SAMPLE_RATE)
        yield from _run(predictor, policy, results)
    with limit():
        results = predictor.flush()
    yield from _run(predictor, policy, results)
    for e in policy.finish(max(policy.clock, x.size / SAMPLE_RATE)):
        yield e.to_dict()


def monitor_mic(
    *,
    device: int | str | None = None,
    sample_rate: int = SAMPLE_RATE,
    chunk_s: float = 0.1,
    duration_s: float | None = None,
    emotion_model: Bundle | str | Any = None,
    scream_model: ScreamDetector | Bundle | str | None = None,
    policy_config: PolicyConfig | Mapping[str, Any] | None = None,
    stream_config: StreamConfig | None = None,
    keyword_spotter: Any = None,
) -> Iterator[dict[str, Any]]:
    """Listen to the microphone (``sounddevice``, extra ``mic``) and yield window and event dicts.

    Runs until ``duration_s`` seconds of audio were heard (``None`` = until the caller stops
    iterating). The countdown is advanced between chunks with the stream clock.
    """
    try:
        sd: Any = require("sounddevice", "mic")
    except OSError as e:  # sounddevice installed, PortAudio library missing
        raise DependencyError(f"sounddevice cannot load the PortAudio library ({e}); install PortAudio") from e
    _check_chunk(chunk_s)
    predictor, policy = _pipeline(stream_config, emotion_model, scream_model, keyword_spotter, policy_config)
    block = max(1, round(chunk_s * sample_rate))
    limit = _blas_single_thread()
    heard = 0
    with sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=block,
                        device=device) as stream:
        while duration_s is None or heard < duration_s * sample_rate:
            data, _overflowed = stream.read(block)
            chunk = np.asarray(data, np.float32).reshape(-1)
            heard += chunk.size
            with limit():
                results = predictor.push(chunk, sample_rate)
            yield from _run(predictor, policy, results)
            if not results:
                for ev in policy.tick(max(policy.clock, predictor.samples_seen / SAMPLE_RATE)):
                    yield ev.to_dict()
