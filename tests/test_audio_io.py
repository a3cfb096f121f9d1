"""Decoding every supported container, resampling, mono mix-down and the rejection rules."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import SR, noise, tone
from vocalis.audio.io import load_audio, resample, validate
from vocalis.errors import AudioError, VocalisError


def _encode_av(path: Path, x: np.ndarray, sr: int, fmt: str, codec: str) -> Path:
    import av

    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = "mono"
        frame_size = 960 if codec == "libopus" else 1152
        for i in range(0, len(x), frame_size):
            chunk = x[i : i + frame_size]
            fr = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="flt", layout="mono")
            fr.sample_rate = sr
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


@pytest.mark.parametrize("subtype,ext", [("PCM_16", "wav"), ("FLOAT", "wav"), ("PCM_24", "flac"), ("VORBIS", "ogg")])
def test_soundfile_formats_decode_to_16k_float32(tmp_path: Path, subtype: str, ext: str) -> None:
    x = tone(440, 1.0, sr=44_100)
    p = tmp_path / f"a.{ext}"
    sf.write(p, x, 44_100, subtype=subtype)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SR) < 50
    # energy preserved (lossy vorbis within a few percent)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("fmt,codec,ext,sr", [("webm", "libopus", "webm", 48_000), ("ogg", "libopus", "opus", 48_000),
                                              ("mp3", "libmp3lame", "mp3", 44_100)])
def test_browser_and_compressed_formats(tmp_path: Path, fmt: str, codec: str, ext: str, sr: int) -> None:
    x = tone(300, 1.5, sr=sr, amp=0.4)
    p = _encode_av(tmp_path / f"clip.{ext}", x, sr, fmt, codec)
    y = load_audio(p)
    assert y.dtype == np.float32
    assert 1.3 * SR < len(y) < 1.7 * SR
    spec = np.abs(np.fft.rfft(y[SR // 4 : SR // 4 + SR]))
    assert np.argmax(spec) == pytest.approx(300, abs=3)  # 1 Hz bins over 1 s


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    left, right = tone(200, 0.5), -tone(200, 0.5)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right + 0.0], axis=1), SR)
    assert np.allclose(load_audio(p), 0.0, atol=1e-4)  # opposite phases cancel in the mean


def test_bytes_and_file_objects(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, noise(0.5), SR, format="WAV")
    assert load_audio(buf.getvalue()).shape == (SR // 2,)
    buf.seek(0)
    assert load_audio(buf).shape == (SR // 2,)


def test_resample_preserves_frequency() -> None:
    y = resample(tone(1000, 1.0, sr=48_000), 48_000, SR)
    assert len(y) == SR
    assert np.argmax(np.abs(np.fft.rfft(y))) == 1000


def test_missing_file() -> None:
    with pytest.raises(AudioError, match="not found"):
        load_audio("/nonexistent/clip.wav")


def test_too_long_is_rejected_before_full_decode(tmp_path: Path) -> None:
    p = tmp_path / "long.flac"
    sf.write(p, np.zeros(SR * 5, np.float32), SR)
    with pytest.raises(AudioError, match="max_duration=2s"):
        load_audio(p, max_duration=2)
    assert load_audio(p, max_duration=None).shape == (SR * 5,)


def test_too_long_compressed_stops_decoding(tmp_path: Path) -> None:
    p = _encode_av(tmp_path / "long.webm", np.zeros(48_000 * 4, np.float32), 48_000, "webm", "libopus")
    with pytest.raises(AudioError, match="max_duration=1s"):
        load_audio(p, max_duration=1)


@pytest.mark.parametrize("x,match", [
    (np.array([], np.float32), "empty"),
    (np.full(SR, np.nan, np.float32), "non-finite"),
    (np.r_[np.zeros(SR - 1), np.inf].astype(np.float32), "non-finite"),
    (np.zeros(10, np.float32), "at least"),
    (np.zeros((2, 2, 2), np.float32), "ndim=3"),
])
def test_validate_rules(x: np.ndarray, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        validate(x, SR)


@pytest.mark.parametrize("dtype,hint", [
    (np.int16, "divide int16 samples by 32768"),
    (np.int32, "divide int32 samples by 2147483648"),
    (np.int64, "divide int64 samples by 9223372036854775808"),
    (np.uint8, r"convert uint8 samples with \(x - 128\) / 128"),
    (np.bool_, "$"),
    (np.complex64, "$"),
    (object, "$"),
])
def test_non_float_samples_are_refused_with_the_rule_and_a_hint(dtype: type, hint: str) -> None:
    """Integer PCM was averaged/cast to float unscaled and gave confident garbage predictions."""
    x = tone(220, 0.5)
    if np.dtype(dtype).kind in "iu":
        arr = (x * 0.5 * np.iinfo(dtype).max + (np.iinfo(dtype).max // 2 if np.dtype(dtype).kind == "u" else 0))
        arr = arr.astype(dtype)
    else:
        arr = x.astype(dtype)
    with pytest.raises(AudioError, match=rf"audio: dtype={np.dtype(dtype).name} must be floating point \(float32 or float64\) "
                                         rf"in \[-1, 1\].*{hint}"):
        validate(arr, SR)
    with pytest.raises(AudioError, match="must be floating point"):
        validate(arr[:, None], SR)  # (frames, 1) too
    with pytest.raises(AudioError, match="dtype=int64"):
        validate([0] * SR, SR)  # a list of Python ints is int64


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_samples_pass_as_float32(dtype: type) -> None:
    x = tone(220, 0.5).astype(dtype)
    y = validate(x, SR)
    assert y.dtype == np.float32 and np.allclose(y, x.astype(np.float32))


def test_channels_first_stereo_gets_a_clear_message() -> None:
    x = tone(220, 1.0)
    with pytest.raises(AudioError, match=r"samples.shape=\(2, 16000\) must be \(frames,\) or \(frames, channels\) "
                                         r"with 1 to 64 channels; this looks channels-first \(channels, frames\): "
                                         r"pass samples.T"):
        validate(np.stack([x, x]), SR)
    with pytest.raises(AudioError, match=r"samples.shape=\(16000, 0\) must be"):
        validate(np.zeros((SR, 0), np.float32), SR)
    # the (frames, channels) layout soundfile returns is mixed down, as before
    st = np.stack([x, 0.5 * x], axis=1)
    assert np.allclose(validate(st, SR), 0.75 * x)
    assert np.allclose(validate(np.stack([x, x]).T, SR), x)
    assert validate(np.zeros((SR, 64), np.float32), SR).shape == (SR,)


@pytest.mark.parametrize("rate", [16000.5, "16k", True, None, float("nan")])
def test_a_sample_rate_must_be_a_whole_number_of_hz(rate: object) -> None:
    with pytest.raises(AudioError, match="must be a whole number of Hz"):
        validate(tone(440, 0.5), rate)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match="must be a whole number of Hz"):
        resample(tone(440, 0.5), rate)  # type: ignore[arg-type]
    assert validate(tone(440, 0.5), 16000.0).size == SR // 2  # a float that is whole is fine


def test_audio_error_is_a_vocalis_error() -> None:
    assert issubclass(AudioError, VocalisError)


def test_damaged_mp3_decodes_the_same_way_every_time() -> None:
    """MP3 goes through PyAV: libsndfile's MP3 decoder returned different garbage run to run."""
    import av

    buf = io.BytesIO()
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)).astype(np.float32)
    with av.open(buf, "w", format="mp3") as c:
        s = c.add_stream("mp3", rate=16000)
        s.layout = "mono"  # type: ignore[attr-defined]
        for i in range(0, x.size, 1152):
            fr = av.AudioFrame.from_ndarray(x[None, i:i + 1152], format="flt", layout="mono")
            fr.sample_rate = 16000
            for p in s.encode(fr):  # type: ignore[attr-defined]
                c.mux(p)
        for p in s.encode(None):  # type: ignore[attr-defined]
            c.mux(p)
    good = buf.getvalue()
    assert load_audio(good).shape == (32000,)
    for bad in (good[: len(good) // 2] + bytes(range(256)) * 20 + good[len(good) // 2:], good[: len(good) // 3]):
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(load_audio(bad).tobytes())
            except AudioError as e:
                outcomes.append(str(e).encode())
        assert outcomes[0] == outcomes[1] == outcomes[2]


def test_ffmpeg_allocations_are_capped_once_pyav_decodes(tmp_path: Path) -> None:
    """A container header claiming a huge element must not make FFmpeg allocate (and zero) gigabytes."""
    import ctypes

    from vocalis.audio import io as audio_io

    path = _encode_av(tmp_path / "clip.webm", tone(440.0, 0.5, sr=48_000), 48_000, "webm", "libopus")
    assert load_audio(path).size > 0  # the first PyAV decode sets the cap
    if not audio_io.cap_ffmpeg_allocations():
        pytest.skip("libavutil not found in /proc/self/maps (not Linux): FFmpeg keeps its own 2 GiB limit")
    with open("/proc/self/maps", encoding="utf-8") as fh:
        lib = ctypes.CDLL(sorted({ln.split()[-1] for ln in fh if "libavutil" in ln and "/" in ln})[0])
    lib.av_malloc.argtypes, lib.av_malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    lib.av_free.argtypes = [ctypes.c_void_p]
    small = lib.av_malloc(1 << 20)
    assert small
    lib.av_free(small)
    assert not lib.av_malloc(audio_io.FFMPEG_MAX_ALLOC + 1)  # refused instead of allocated
