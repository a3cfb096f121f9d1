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
    AUDIBLE_DBFS,
    DEFAULT_MAX_DURATION_S,
    LEVEL_FRAME,
    MAX_SAMPLE_RATE,
    MIN_DURATION_S,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
)
from vocalis.errors import AudioError

MAX_CHANNELS = 64
"""More channels than this is treated as a corrupt header."""

MAX_FRAMES_PER_SECOND = 1000
"""Decoded frames (packets) allowed per second of ``max_duration``: more means a file of empty packets."""

FFMPEG_MAX_ALLOC = 256 << 20
"""Largest single allocation FFmpeg may make while decoding (its default is 2 GiB): a container
header can claim an element of any size, and FFmpeg zero-fills what it allocates for it, so a
crafted 1 KB WebM could cost gigabytes of memory (a fuzzing finding). Audio never needs blocks this big."""

_BLOCK = 65_536
_SNIFF_BYTES = 65_536

Source = str | Path | bytes | BinaryIO


def _name(source: Source) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", "<stream>"))


def _whole_rate(sample_rate: float, name: str) -> int:
    """``sample_rate`` as an int; a fractional, boolean or non-numeric rate is :class:`AudioError`
    (``int()`` would silently truncate 16000.5 to 16000)."""
    try:
        ok = not isinstance(sample_rate, bool) and float(sample_rate).is_integer()
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise AudioError(f"{name}: sample_rate={sample_rate!r} must be a whole number of Hz")
    return int(sample_rate)


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


def _head_and_size(source: Source) -> tuple[bytes, int | None]:
    """The first bytes of ``source`` and its total size (``None`` when unknown); the position is kept."""
    if isinstance(source, bytes):
        return source[:_SNIFF_BYTES], len(source)
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return f.read(_SNIFF_BYTES), Path(source).stat().st_size
    try:
        pos = source.tell()
        head = source.read(_SNIFF_BYTES)
        end = source.seek(0, io.SEEK_END)
        source.seek(pos)
    except (OSError, ValueError, AttributeError):
        return b"", None
    return bytes(head), end - pos


def check_wav_header(head: bytes, size: int | None, name: str = "audio") -> None:
    """Reject a RIFF/WAVE header whose rate or channel count is absurd, or whose data chunk is cut short.

    Other formats pass unchecked (their decoders check them). A ``data`` size of 0 or 0xFFFFFFFF
    (a streamed WAV whose header was never patched) is accepted.

    >>> import struct
    >>> fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 0, 16000, 32000, 2, 16)
    >>> check_wav_header(b"RIFF" + bytes(4) + b"WAVE" + fmt, None)
    Traceback (most recent call last):
    ...
    vocalis.errors.AudioError: audio: channels=0 must be between 1 and 64
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    off = 12
    while off + 8 <= len(head):
        cid, n = head[off : off + 4], int.from_bytes(head[off + 4 : off + 8], "little")
        body = off + 8
        if cid == b"fmt " and body + 8 <= len(head):
            channels = int.from_bytes(head[body + 2 : body + 4], "little")
            rate = int.from_bytes(head[body + 4 : body + 8], "little")
            _check_channels(channels, name)
            _check_rate(rate, name)
        elif cid == b"data":
            if size is not None and n not in (0, 0xFFFFFFFF) and body + n > size:
                raise AudioError(
                    f"{name}: WAV is truncated: its header declares {n} bytes of audio data but the file "
                    f"holds {max(size - body, 0)}; the whole file must be uploaded"
                )
            return
        off = body + n + (n & 1)
    if size is not None and size <= len(head):
        raise AudioError(f"{name}: WAV is truncated: the file ends before its data chunk ({size} bytes)")


class _MonoResampler:
    """Collects float32 mono blocks, checks they are finite, and resamples them as a stream (soxr).

    Memory stays proportional to the *output* (mono, target rate), whatever the input's
    channel count or sample rate.
    """

    def __init__(self, rate: int, target: int, name: str) -> None:
        import soxr

        self.name = name
        self.in_samples = 0
        self.non_finite = 0
        self._stream = None if rate == target else soxr.ResampleStream(
            rate, target, 1, dtype="float32", quality="HQ")
        self._out: list[np.ndarray] = []

    def add(self, block: np.ndarray, last: bool = False) -> None:
        with np.errstate(all="ignore"):  # an overflowing mix-down is reported below, not warned about
            x = to_mono(block)
        self.in_samples += x.size
        finite = np.isfinite(x)
        if not finite.all():
            self.non_finite += int(x.size - np.count_nonzero(finite))
            x = np.where(finite, x, np.float32(0))
        if self._stream is not None:
            x = self._stream.resample_chunk(x, last=last)
        if x.size:
            self._out.append(np.ascontiguousarray(x, dtype=np.float32))

    def finish(self) -> np.ndarray:
        if self._stream is not None:
            self.add(np.zeros(0, np.float32), last=True)
        if self.non_finite:
            raise AudioError(
                f"{self.name}: audio has {self.non_finite} non-finite samples (NaN/Inf); all must be finite")
        return np.concatenate(self._out) if self._out else np.zeros(0, np.float32)


def _av_reason(e: Exception) -> str:
    """A short reason for a PyAV/FFmpeg error (its ``strerror`` without the errno and file name)."""
    reason = getattr(e, "strerror", None)
    return str(reason) if reason else f"{type(e).__name__}: {e}"


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
    _check_rate(_whole_rate(orig_sr, "resample"), "resample")
    _check_rate(_whole_rate(target_sr, "resample"), "resample")
    x = np.asarray(samples, dtype=np.float32)
    if orig_sr == target_sr:
        return x
    import soxr

    return np.ascontiguousarray(soxr.resample(x, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def pcm_offset_scale(dtype: np.dtype) -> tuple[int, int]:
    """``(offset, scale)`` that map integer PCM of ``dtype`` to [-1, 1): ``(x - offset) / scale``;
    unsigned PCM is offset binary (uint8 silence is 128).

    >>> pcm_offset_scale(np.dtype(np.int16)), pcm_offset_scale(np.dtype(np.uint8))
    ((0, 32768), (128, 128))
    """
    mid = 2 ** (8 * dtype.itemsize - 1)
    return (mid if dtype.kind == "u" else 0), mid


def _dtype_hint(dtype: np.dtype) -> str:
    """How to turn samples of a non-float ``dtype`` into float samples in [-1, 1]."""
    if dtype.kind not in "iu":
        return ""
    offset, scale = pcm_offset_scale(dtype)
    return f"; divide {dtype} samples by {scale}" if not offset else f"; convert {dtype} samples with (x - {offset}) / {scale}"


def validate(
    samples: np.ndarray,
    sample_rate: int,
    *,
    name: str = "audio",
    max_duration: float | None = DEFAULT_MAX_DURATION_S,
) -> np.ndarray:
    """Check the signal contract and return the samples as float32 mono.

    The contract: a floating-point array (float32 or float64) of samples in [-1, 1], ``(frames,)``
    or ``(frames, channels)`` (channels are averaged), and an integer sample rate.
    Raises :class:`AudioError` for integer/bool/complex/object samples (PCM integers are not
    rescaled, so they must be converted by the caller), a channels-first array, a bad rate, and
    empty, too short, too long or non-finite audio.

    >>> validate(np.zeros(1600, np.int16), 16000)
    Traceback (most recent call last):
    ...
    vocalis.errors.AudioError: audio: dtype=int16 must be floating point (float32 or float64) in [-1, 1]; divide int16 samples by 32768
    """
    _check_rate(_whole_rate(sample_rate, name), name)
    arr = np.asarray(samples)
    if arr.dtype.kind != "f":
        raise AudioError(
            f"{name}: dtype={arr.dtype} must be floating point (float32 or float64) in [-1, 1]{_dtype_hint(arr.dtype)}"
        )
    if arr.ndim == 2 and not 1 <= arr.shape[1] <= MAX_CHANNELS:
        hint = (
            "; this looks channels-first (channels, frames): pass samples.T"
            if 1 <= arr.shape[0] <= MAX_CHANNELS < arr.shape[1] else ""
        )
        raise AudioError(
            f"{name}: samples.shape={arr.shape} must be (frames,) or (frames, channels) "
            f"with 1 to {MAX_CHANNELS} channels{hint}"
        )
    x = to_mono(arr)
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


def check_audible(samples: np.ndarray, name: str = "audio", floor_dbfs: float = AUDIBLE_DBFS) -> np.ndarray:
    """Return ``samples`` (float mono, any rate) when their loudest 32 ms frame reaches ``floor_dbfs``;
    else :class:`AudioError` naming the level and the rule.

    >>> check_audible(np.zeros(16000, np.float32))
    Traceback (most recent call last):
    ...
    vocalis.errors.AudioError: audio: no audible sound (loudest 32 ms at -inf dBFS); speech must reach -60 dBFS
    >>> check_audible(np.full(16000, 0.01, np.float32)).size
    16000
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = max(1, x.size // LEVEL_FRAME)
    frames = x[: n * LEVEL_FRAME].reshape(n, -1) if x.size >= LEVEL_FRAME else x[None, :]
    peak = float(np.sqrt(np.max(np.mean(np.square(frames, dtype=np.float64), axis=1))))
    level = 20 * np.log10(peak) if peak > 0 else -np.inf
    if not level >= floor_dbfs:
        shown = "-inf" if level == -np.inf else f"{level:.0f}"
        raise AudioError(f"{name}: no audible sound (loudest 32 ms at {shown} dBFS); "
                         f"speech must reach {floor_dbfs:.0f} dBFS")
    return samples


def _read_soundfile(
    source: Source, max_duration: float | None, name: str, target: int
) -> tuple[np.ndarray, int] | None:
    """Read with libsndfile, block by block; ``None`` when it does not know the format."""
    import soundfile as sf

    fobj: str | BinaryIO = str(source) if isinstance(source, (str, Path)) else (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    try:
        with sf.SoundFile(fobj) as f:
            if f.format == "MPEG":  # libsndfile's MP3 decoder returns varying garbage for damaged files
                raise LookupError("MP3 goes to PyAV")
            _check_rate(f.samplerate, name)
            _check_channels(f.channels, name)
            if f.frames > 0:
                _check_duration(f.frames / f.samplerate, max_duration, name)
            out = _MonoResampler(int(f.samplerate), target, name)
            for block in f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                out.add(block)
            return out.finish(), int(f.samplerate)
    except AudioError:
        raise
    except Exception:  # libsndfile: unknown format or corrupt -> let PyAV try
        if not isinstance(fobj, str):
            fobj.seek(0)
        return None


_ffmpeg_capped = False


def cap_ffmpeg_allocations(limit: int = FFMPEG_MAX_ALLOC) -> bool:
    """Set FFmpeg's ``av_max_alloc`` in the libavutil PyAV loaded (found in ``/proc/self/maps``).

    Returns whether it was set; False where the library cannot be found (not Linux, a PyAV built
    without a separate libavutil), which leaves FFmpeg's own 2 GiB limit.
    """
    import ctypes

    import av  # noqa: F401  (loads libavutil)

    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = sorted({line.split()[-1] for line in fh if "libavutil" in line and "/" in line})
        if not paths:
            return False
        lib = ctypes.CDLL(paths[0])
        lib.av_max_alloc.argtypes = [ctypes.c_size_t]
        lib.av_max_alloc.restype = None
        lib.av_max_alloc(int(limit))
        return True
    except (OSError, AttributeError):
        return False


def _read_av(source: Source, max_duration: float | None, name: str, target: int) -> tuple[np.ndarray, int]:
    """Demux and decode with PyAV; stops as soon as ``max_duration`` seconds were decoded."""
    import av

    global _ffmpeg_capped
    if not _ffmpeg_capped:
        _ffmpeg_capped = True
        cap_ffmpeg_allocations()

    fobj: str | BinaryIO = str(source) if isinstance(source, (str, Path)) else (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    max_frames = None if max_duration is None else int(MAX_FRAMES_PER_SECOND * max_duration) + 1000
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
            out = _MonoResampler(rate, target, name)
            for n_frames, frame in enumerate(container.decode(stream), start=1):
                for block in resampler.resample(frame):
                    out.add(block.to_ndarray().reshape(-1))
                if max_duration is not None and out.in_samples / rate > max_duration:
                    raise AudioError(
                        f"{name}: duration>{max_duration:g}s: decoded audio must be at most "
                        f"max_duration={max_duration:g}s"
                    )
                if max_frames is not None and n_frames > max_frames:
                    raise AudioError(
                        f"{name}: more than {max_frames} audio frames for at most {max_duration:g}s of audio; "
                        f"the stream must not be made of empty packets"
                    )
            for block in resampler.resample(None):
                out.add(block.to_ndarray().reshape(-1))
            return out.finish(), rate
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"{name}: cannot decode audio ({_av_reason(e)})") from e


def load_audio(
    source: Source,
    sample_rate: int = SAMPLE_RATE,
    *,
    max_duration: float | None = DEFAULT_MAX_DURATION_S,
) -> np.ndarray:
    """Decode ``source`` (path, bytes or binary file) to float32 mono at ``sample_rate``.

    WAV/FLAC/OGG go through libsndfile; MP3, WebM/Opus, M4A and the rest through PyAV. Both are
    read block by block, mixed down and resampled as they go, so memory follows the output, and
    decoding stops as soon as ``max_duration`` seconds are exceeded. Every rule broken is an
    :class:`~vocalis.errors.AudioError` naming the source.

    >>> import numpy as np, io, soundfile as sf
    >>> buf = io.BytesIO(); sf.write(buf, np.zeros(8000, np.float32), 8000, format="WAV")
    >>> load_audio(buf.getvalue()).shape
    (16000,)
    """
    name = _name(source)
    _check_rate(_whole_rate(sample_rate, "load_audio"), "load_audio")
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            raise AudioError(f"{name}: is a folder, not an audio file (for a folder of recordings use "
                             "'vocalis batch FOLDER --out results.parquet')")
        if not p.is_file():
            raise AudioError(f"{name}: file not found")
        if p.stat().st_size == 0:
            raise AudioError(f"{name}: file is empty (0 bytes)")
    elif isinstance(source, bytes) and len(source) == 0:
        raise AudioError(f"{name}: audio is empty (0 bytes)")
    try:
        head, size = _head_and_size(source)
    except OSError as e:
        raise AudioError(f"{name}: cannot read ({e.strerror or e})") from e
    if size == 0:
        raise AudioError(f"{name}: audio is empty (0 bytes)")
    check_wav_header(head, size, name)
    got = _read_soundfile(source, max_duration, name, sample_rate)
    if got is None:
        got = _read_av(source, max_duration, name, sample_rate)
    data, _rate = got
    # the rules on the decoded signal (rate and length at the source rate; finiteness was checked per block)
    if data.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    seconds = data.size / sample_rate
    if seconds < MIN_DURATION_S:
        raise AudioError(f"{name}: duration={seconds:.3f}s must be at least {MIN_DURATION_S}s")
    _check_duration(seconds, max_duration, name)
    if not np.isfinite(data).all():  # finite input whose values overflow float32 when mixed or resampled
        raise AudioError(f"{name}: decoded samples overflow float32 (|x| near 3.4e38); audio must be finite")
    return data


def decode_bytes(data: bytes, sample_rate: int = SAMPLE_RATE, **kwargs: float | None) -> np.ndarray:
    """:func:`load_audio` for an in-memory encoded file."""
    return load_audio(data, sample_rate, **kwargs)  # type: ignore[arg-type]
