"""Atheris fuzz target for the audio decoder (:func:`vocalis.audio.io.load_audio`).

Any input must either decode to the one signal contract (finite float32 mono at 16 kHz, within
the duration cap) or raise :class:`~vocalis.errors.AudioError`; any other exception, a crash in
libsndfile/FFmpeg, a hang or runaway memory is a finding.

Run it (README, "Fuzzing the decoder")::

    python fuzz/fuzz_decode.py -max_total_time=600 -rss_limit_mb=2048 -timeout=20 fuzz/corpus

``fuzz/corpus`` is created on the first run with small valid WAV, FLAC, Ogg/Vorbis, Ogg/Opus,
WebM/Opus and MP3 seeds (``--make-corpus DIR`` writes them and exits). ``-runs=N`` bounds the
number of inputs instead of the time; CI runs a short pass from ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

MAX_DURATION_S = 30.0
"""A smaller cap than the service's keeps each input fast; the capping logic is the same."""


def make_seed_corpus(folder: Path) -> list[Path]:
    """Write small valid files of every supported container to ``folder`` (the fuzzer mutates them)."""
    import av
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sr = 16_000
    t = np.arange(sr // 4) / sr
    x = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    written = []
    for name, fmt, subtype in [("pcm16.wav", "WAV", "PCM_16"), ("float.wav", "WAV", "FLOAT"),
                               ("clip.flac", "FLAC", "PCM_16"), ("clip.ogg", "OGG", "VORBIS")]:
        buf = io.BytesIO()
        sf.write(buf, np.stack([x, -x], axis=1) if name == "float.wav" else x, sr, format=fmt, subtype=subtype)
        (folder / name).write_bytes(buf.getvalue())
        written.append(folder / name)
    for name, fmt, codec, rate in [("clip.webm", "webm", "libopus", 48_000), ("clip.opus", "ogg", "libopus", 48_000),
                                   ("clip.mp3", "mp3", "libmp3lame", 16_000)]:
        y = np.interp(np.arange(len(x) * rate // sr) * sr / rate, np.arange(len(x)), x).astype(np.float32)
        buf = io.BytesIO()
        with av.open(buf, "w", format=fmt) as c:
            s = c.add_stream(codec, rate=rate)
            s.layout = "mono"  # type: ignore[union-attr]
            step = 960 if codec == "libopus" else 1152
            for i in range(0, y.size, step):
                fr = av.AudioFrame.from_ndarray(y[None, i : i + step], format="flt", layout="mono")
                fr.sample_rate = rate
                for p in s.encode(fr):  # type: ignore[union-attr]
                    c.mux(p)
            for p in s.encode(None):  # type: ignore[union-attr]
                c.mux(p)
        (folder / name).write_bytes(buf.getvalue())
        written.append(folder / name)
    return written


def check_one(data: bytes) -> None:
    """The property: an AudioError or a valid signal; anything else propagates (a finding)."""
    from vocalis.audio.io import load_audio
    from vocalis.errors import AudioError

    try:
        y = load_audio(data, max_duration=MAX_DURATION_S)
    except AudioError:
        return
    assert y.dtype == np.float32 and y.ndim == 1, (y.dtype, y.shape)
    assert 0 < y.size <= 16_000 * MAX_DURATION_S + 16_000, y.size
    assert np.isfinite(y).all(), "non-finite samples escaped"


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[1] == "--make-corpus":
        for p in make_seed_corpus(Path(argv[2])):
            print(p)
        return
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed; install it with: pip install atheris (it is in the 'dev' extra)")
    import av

    av.logging.set_level(av.logging.PANIC)  # FFmpeg would print a line per rejected input
    for arg in argv[1:]:  # corpus folders (seeded when new or empty); a file argument is replayed
        folder = Path(arg)
        if not arg.startswith("-") and not folder.is_file() and (not folder.exists() or not any(folder.iterdir())):
            make_seed_corpus(folder)
    with atheris.instrument_imports(include=["vocalis"]):
        import vocalis.audio.io  # noqa: F401

    atheris.Setup(argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
