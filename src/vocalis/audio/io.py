"""Decode, validate and resample audio, in-process (soundfile, then PyAV; no ffmpeg calls).

Every function returns the one signal contract: a float32 mono array at the
requested rate (default :data:`~vocalis.audio.constants.SAMPLE_RATE`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vocalis.audio.constants import (
    DEFAULT_MAX_DURATION_S,
    MAX_SAMPLE_RATE,
    MIN_DURATION_S,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
)
from vocalis.errors import AudioError

MAX_CHANNELS = 64
"""More channels than this is treated as a corrupt header."""

Source = str | Path | bytes | BinaryIO


def _name(source: Source) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", "<stream>"))


def _check_rate(sample_rate: int, name: str) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name}: sample_rate={sample_rate} must be between "
            f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz"
        )


def _check_channels(channels: int, name: str) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{name}: channels={channels} must be between 1 and {MAX_CHANNELS}")


def _check_duration(seconds: float, max_duration: float | None, name: str) -> None:
    if max_duration is not None and seconds > max_duration:
        raise AudioError(
            f"{name}: duration={seconds:.1f}s must be at most max_duration={max_duration:g}s"
        )


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels of a ``(frames, channels)`` array into float32 mono."""
    x = np.asarray(samples)
    if x.ndim == 2:
        # one channel: a view (a mean over a length-1 axis is a slow, pointless copy)
        x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    elif x.ndim != 1:
        raise AudioError(f"samples.ndim={x.ndim} must be 1 (mono) or 2 (frames, channels)")
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float32 mono audio with soxr (high quality); a no-op when rates match."""
    _check_rate(int(orig_sr), "resample")
    _check_rate(int(target_sr), "resample")
    x = np.asarray(samples, dtype=np.float32)
    if orig_sr == target_sr:
        return x
    import soxr

    return np.ascontiguousarray(soxr.resample(x, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def validate(
    samples: np.ndarray,
    sample_rate: int,
    *,
    name: str = "audio",
    max_duration: float | None = DEFAULT_MAX_DURATION_S,
) -> np.ndarray:
    """Check the signal contract and return the samples as float32 mono.

    Raises :class:`AudioError` for a bad rate, empty, too short, too long or non-finite audio.
    """
    _check_rate(int(sample_rate), name)
    x = to_mono(samples)
    if x.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    seconds = x.size / sample_rate
    if seconds < MIN_DURATION_S:
        raise AudioError(
            f"{name}: duration={seconds:.3f}s must be at least {MIN_DURATION_S}s"
        )
    _check_duration(seconds, max_duration, name)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise AudioError(f"{name}: audio has {bad} non-finite samples (NaN/Inf); all must be finite")
    return x


def _read_soundfile(source: Source, max_duration: float | None, name: str) -> tuple[np.ndarray, int] | None:
    """Read with libsndfile; ``None`` when it does not know the format."""
    import soundfile as sf

    fobj: str | BinaryIO = str(source) if isinstance(source, (str, Path)) else (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    try:
        with sf.SoundFile(fobj) as f:
            _check_rate(f.samplerate, name)
            _check_channels(f.channels, name)
            if f.frames > 0:
                _check_duration(f.frames / f.samplerate, max_duration, name)
            data = f.read(dtype="float32", always_2d=True)
            return data, int(f.samplerate)
    except AudioError:
        raise
    except Exception:  # libsndfile: unknown format or corrupt -> let PyAV try
        if not isinstance(fobj, str):
            fobj.seek(0)
        return None


def _read_av(source: Source, max_duration: float | None, name: str) -> tuple[np.ndarray, int]:
    import av

    fobj: str | BinaryIO = str(source) if isinstance(source, (str, Path)) else (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    chunks: list[np.ndarray] = []
    total = 0
    rate = 0
    try:
        with av.open(fobj, mode="r", metadata_errors="ignore") as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError(f"{name}: no audio stream found")
            stream = streams[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            _check_rate(rate, name)
            _check_channels(int(stream.codec_context.channels or 1), name)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    total += arr.size
                if max_duration is not None and total / rate > max_duration:
                    raise AudioError(
                        f"{name}: duration>{max_duration:g}s: decoded audio must be at most "
                        f"max_duration={max_duration:g}s"
                    )
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"{name}: cannot decode audio ({type(e).__name__}: {e})") from e
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return data.astype(np.float32, copy=False), rate


def load_audio(
    source: Source,
    sample_rate: int = SAMPLE_RATE,
    *,
    max_duration: float | None = DEFAULT_MAX_DURATION_S,
) -> np.ndarray:
    """Decode ``source`` (path, bytes or binary file) to float32 mono at ``sample_rate``.

    WAV/FLAC/OGG/MP3 go through libsndfile; WebM/Opus, M4A and the rest through PyAV.
    Decoding stops as soon as ``max_duration`` seconds are exceeded.

    >>> import numpy as np, io, soundfile as sf
    >>> buf = io.BytesIO(); sf.write(buf, np.zeros(8000, np.float32), 8000, format="WAV")
    >>> load_audio(buf.getvalue()).shape
    (16000,)
    """
    name = _name(source)
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise AudioError(f"{name}: file not found")
        if p.stat().st_size == 0:
            raise AudioError(f"{name}: file is empty (0 bytes)")
    elif isinstance(source, bytes) and len(source) == 0:
        raise AudioError(f"{name}: audio is empty (0 bytes)")
    got = _read_soundfile(source, max_duration, name)
    if got is None:
        got = _read_av(source, max_duration, name)
    data, rate = got
    x = validate(data, rate, name=name, max_duration=max_duration)
    return resample(x, rate, sample_rate)


def decode_bytes(data: bytes, sample_rate: int = SAMPLE_RATE, **kwargs: float | None) -> np.ndarray:
    """:func:`load_audio` for an in-memory encoded file."""
    return load_audio(data, sample_rate, **kwargs)  # type: ignore[arg-type]
