"""Voice activity: Silero VAD (ONNX, run with onnxruntime directly) or an energy fallback, per
32 ms frame for streams and as one :class:`SpeechPresence` per clip.

Silero's ONNX files ship inside the ``silero-vad`` PyPI package (install it with
``pip install --no-deps silero-vad``: its own dependencies pull torch, which is not needed
here). :func:`silero_onnx_path` finds them; nothing is downloaded. Without the package
:class:`EnergyVAD` is used and results say ``voice_model="energy"``.

Both take 16 kHz audio in arbitrary pieces and return one probability per complete
512-sample (32 ms) frame, carrying state (LSTM state, 64-sample context) between calls.

Silence gate: Silero costs ~0.15 ms of CPU per frame whatever the frame holds, and a live monitor
mostly streams a quiet room. :class:`SileroVAD` therefore skips a frame (probability 0) when it
and the ``gate_frames - 1`` frames before it are all below ``gate_dbfs`` dBFS; the first frames of a
quiet stretch still go through the model, so its hangover after speech is kept, and its recurrent
state is held over the skipped stretch (it has settled on silence by then). On RAVDESS, TESS and
screams-corpus audio the gate skips ~24 % of the frames and the speech decisions (p > 0.5) agree
with the ungated model on 99.5 % of them (``tests/test_streaming.py`` checks >= 98 %).

Load shedding: :meth:`SileroVAD.shed` takes audio without running the model (NaN per frame; the
framing, context and gate bookkeeping move on, the recurrent state is held as over a gated
stretch), so an overloaded server can keep the scream detector on every window and drop the VAD
instead of audio (:mod:`vocalis.service.stream_engine`).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.errors import AudioError, ConfigError, DependencyError, ModelError

FRAME = 512
"""Samples per VAD frame at 16 kHz (32 ms), Silero's only 16 kHz frame size."""
CONTEXT = 64
"""Samples of the previous frame Silero prepends to each frame."""


class FrameVAD(Protocol):
    name: str

    def __call__(self, samples: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


def silero_onnx_path() -> Path | None:
    """The ``silero_vad_16k_sequence.onnx`` (or ``silero_vad.onnx``) file of the installed package, or None."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    for name in ("silero_vad_16k_sequence.onnx", "silero_vad.onnx"):
        if (data / name).is_file():
            return data / name
    return None


class _Framer:
    """Cuts arbitrary pieces into complete frames, keeping the remainder for the next call."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, np.float32)

    def frames(self, samples: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._pending, np.asarray(samples, np.float32).reshape(-1)])
        n = x.size // FRAME
        self._pending = x[n * FRAME :].copy()
        return x[: n * FRAME].reshape(n, FRAME)

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)


_sessions: dict[str, Any] = {}
_sessions_lock = threading.Lock()


def _silero_session(p: Path) -> Any:
    """One onnxruntime session per model file and process, shared by every :class:`SileroVAD`.

    The recurrent state is an input and an output of each run, so the session itself is stateless
    (and ``run`` is thread-safe); a session per stream cost ~2 MB each.
    """
    key = str(p.resolve())
    with _sessions_lock:
        sess = _sessions.get(key)
        if sess is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            try:
                sess = ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise ModelError(f"silero model={p} cannot be loaded: {e}") from e
            _sessions[key] = sess
        return sess


class SileroVAD:
    """Silero VAD v5/v6 through onnxruntime, streaming (state carried between calls).

    The ``*_sequence.onnx`` model scores a block of frames in one call (one ``session.run`` per
    :meth:`__call__`); the classic model is run frame by frame. The onnxruntime session is shared
    by all instances (the state lives in the instance).
    """

    name = "silero"

    def __init__(self, path: str | Path | None = None, *, gate_dbfs: float | None = -60.0,
                 gate_frames: int = 8) -> None:
        if gate_dbfs is not None and not -200.0 <= gate_dbfs <= 0.0:
            raise ConfigError(f"gate_dbfs={gate_dbfs} must be in [-200, 0] dBFS (or None: no gate)")
        if gate_frames < 1:
            raise ConfigError(f"gate_frames={gate_frames} must be >= 1")
        self.gate_dbfs = gate_dbfs
        self.gate_frames = int(gate_frames)
        p = Path(path) if path is not None else silero_onnx_path()
        if p is None:
            raise DependencyError("silero-vad is not installed; install it with: pip install --no-deps silero-vad")
        self._sess: Any = _silero_session(p)
        inputs = {i.name for i in self._sess.get_inputs()}
        self._sequence = {"input", "h", "c"} <= inputs
        if not self._sequence and not {"input", "state", "sr"} <= inputs:
            raise ModelError(f"silero model={p} has inputs {sorted(inputs)}; expected input/h/c or input/state/sr")
        self.path = p
        self._framer = _Framer()
        self.reset()

    def reset(self) -> None:
        self._framer.reset()
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._quiet_run = 0  # consecutive quiet frames up to the last one seen
        self.frames_skipped = 0
        self.frames_seen = 0
        self.frames_shed = 0  # taken by shed(): not scored at all

    def _skips(self, frames: np.ndarray) -> np.ndarray:
        """Which ``frames`` the silence gate skips (see the module docstring); updates the quiet run."""
        if self.gate_dbfs is None:
            return np.zeros(len(frames), bool)
        f64 = frames.astype(np.float64)
        power = np.einsum("ij,ij->i", f64, f64) / FRAME
        quiet = power < 10.0 ** (self.gate_dbfs / 10.0)
        # quiet-run length ending at each frame: frames since the last loud one (or since the run
        # carried in from the previous call when there is none in this call)
        idx = np.arange(len(frames))
        last_loud = np.maximum.accumulate(np.where(quiet, -1, idx))
        run = np.where(last_loud >= 0, idx - last_loud, self._quiet_run + idx + 1)
        self._quiet_run = int(run[-1])
        return run >= self.gate_frames

    def shed(self, samples: np.ndarray) -> np.ndarray:
        """Take ``samples`` without running the model: NaN for every frame they complete.

        The frames still count (``frames_seen``, ``frames_shed``) and the context and silence gate
        move on, so the next :meth:`__call__` scores its frames as if the shed ones had been gated
        (the recurrent state is held over them).
        """
        frames = self._framer.frames(samples)
        if len(frames):
            self._context = frames[-1, -CONTEXT:].copy()
            self._skips(frames)
            self.frames_seen += len(frames)
            self.frames_shed += len(frames)
        return np.full(len(frames), np.nan, np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of every frame completed by ``samples``."""
        frames = self._framer.frames(samples)
        if len(frames) == 0:
            return np.zeros(0, np.float32)
        ctx = np.empty((len(frames), CONTEXT), np.float32)
        ctx[0] = self._context
        ctx[1:] = frames[:-1, -CONTEXT:]
        block = np.concatenate([ctx, frames], axis=1)
        self._context = frames[-1, -CONTEXT:].copy()
        skip = self._skips(frames)
        self.frames_seen += len(frames)
        self.frames_skipped += int(skip.sum())
        out = np.zeros(len(frames), np.float32)
        # runs of frames the model sees; over a skipped stretch its state is kept as it was
        edges = np.flatnonzero(np.diff(np.concatenate([[True], skip, [True]]).astype(np.int8)))
        for a, b in zip(edges[0::2], edges[1::2]):
            out[a:b] = self._run(block[a:b])
        return out

    def _run(self, block: np.ndarray) -> np.ndarray:
        if self._sequence:
            probs, self._h, self._c = self._sess.run(["speech_probs", "hn", "cn"],
                                                     {"input": block, "h": self._h, "c": self._c})
            return np.asarray(probs, np.float32).reshape(-1)
        out = np.empty(len(block), np.float32)
        sr = np.array(SAMPLE_RATE, np.int64)
        for i, row in enumerate(block):
            p, self._state = self._sess.run(None, {"input": row[None], "state": self._state, "sr": sr})
            out[i] = float(np.asarray(p).reshape(-1)[0])
        return out


class EnergyVAD:
    """Fallback: a logistic curve on frame level (dBFS) above an adaptive noise floor.

    Not a speech detector — any loud sound counts as "voice". Used only when Silero is missing.
    """

    name = "energy"

    def __init__(self, threshold_db: float = 12.0, floor_db: float = -60.0) -> None:
        self.threshold_db = threshold_db
        self.initial_floor_db = floor_db
        self._framer = _Framer()
        self.reset()

    def reset(self) -> None:
        self._framer.reset()
        self._floor = self.initial_floor_db

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        frames = self._framer.frames(samples)
        if len(frames) == 0:
            return np.zeros(0, np.float32)
        db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)
        out = np.empty(len(frames), np.float32)
        for i, d in enumerate(db):
            # the floor follows quiet frames quickly and loud frames slowly
            rate = 0.2 if d < self._floor else 0.002
            self._floor += rate * (d - self._floor)
            out[i] = 1.0 / (1.0 + np.exp(-(d - self._floor - self.threshold_db) / 2.0))
        return out


def make_vad(kind: str = "auto") -> FrameVAD:
    """``"silero"`` (error when missing), ``"energy"``, or ``"auto"`` (Silero when installed)."""
    if kind == "energy":
        return EnergyVAD()
    if kind == "silero" or (kind == "auto" and silero_onnx_path() is not None):
        return SileroVAD()
    if kind == "auto":
        return EnergyVAD()
    raise ConfigError(f"vad={kind!r} must be one of ('auto', 'silero', 'energy')")


SPEECH_PEAK = 0.5
"""A clip holds speech when Silero's probability reaches this (its own default) on at least one 32 ms
frame. Over every clip (``benchmarks/speech_presence.py``, docs/benchmarks.md): 99.7 % of RAVDESS
and all of TESS reach it; white and pink noise at -50 to -15 dBFS and pure tones never do; screamed
calls for help mostly do (79 %), screams without words mostly do not (38 %)."""


@dataclass(frozen=True)
class SpeechPresence:
    """Whether a clip holds speech, by voice activity.

    ``peak`` is the highest frame probability, ``voiced_s`` the seconds of frames at or above
    :data:`SPEECH_PEAK`. ``detected`` is None when the model is the energy fallback, which hears
    any loud sound as voice and so cannot tell.
    """

    peak: float
    voiced_s: float
    model: str

    @property
    def detected(self) -> bool | None:
        return None if self.model != "silero" else self.peak >= SPEECH_PEAK

    @property
    def voiced_s_if_known(self) -> float | None:
        """``voiced_s`` where the model can tell speech from sound, else None (what the stores keep)."""
        return None if self.detected is None else self.voiced_s

    def to_dict(self) -> dict[str, Any]:
        return {"detected": self.detected, "peak": self.peak, "voiced_s": self.voiced_s, "model": self.model}

    def describe(self) -> str:
        """One line for people, e.g. ``no speech heard (voice activity peak 0.04 < 0.5, silero)``."""
        if self.detected is None:
            return f"speech unknown ({self.model} voice activity cannot tell speech from other sound)"
        if self.detected:
            return f"speech {self.voiced_s:.2f} s (voice activity peak {self.peak:.2f}, {self.model})"
        return f"no speech heard (voice activity peak {self.peak:.2f} < {SPEECH_PEAK}, {self.model})"


def speech_presence(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *, vad: str = "auto") -> SpeechPresence:
    """Score a whole 16 kHz clip with a fresh VAD (``"auto"``: Silero when installed; no silence gate).

    >>> speech_presence(np.zeros(16000, np.float32), vad="energy").detected is None
    True
    """
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"sample_rate={sample_rate} must be {SAMPLE_RATE} for voice activity; resample first")
    det: FrameVAD = EnergyVAD() if vad == "energy" else make_vad(vad)
    if isinstance(det, SileroVAD):
        det.gate_dbfs = None  # a clip is scored once: every frame through the model
    x = np.asarray(samples, np.float32).reshape(-1)
    # the trailing part frame is scored too (zero-padded), so a clip under 32 ms is not empty
    pad = (-x.size) % FRAME
    p = det(np.concatenate([x, np.zeros(pad, np.float32)]) if pad else x)
    peak = float(p.max()) if p.size else 0.0
    voiced = float((p >= SPEECH_PEAK).sum()) * FRAME / SAMPLE_RATE
    return SpeechPresence(peak=round(peak, 4), voiced_s=round(voiced, 3), model=det.name)


def check_speech(samples: np.ndarray, name: str = "audio", *, hint: str = "") -> np.ndarray:
    """Return ``samples`` (16 kHz) when Silero hears speech in them, else :class:`AudioError` naming
    the peak and the rule (``hint`` appended). Without ``silero-vad`` nothing can tell speech from
    other sound, and ``samples`` are returned unchecked.
    """
    if silero_onnx_path() is None:
        return samples
    s = speech_presence(samples, SAMPLE_RATE, vad="silero")
    if not s.detected:
        raise AudioError(f"{name}: no speech heard: voice activity peaked at {s.peak:.2f} and must reach "
                         f"{SPEECH_PEAK} (Silero VAD, 32 ms frames).{hint}")
    return samples
