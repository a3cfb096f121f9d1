"""Shared fixtures: seeded rng, synthetic signals, file writers, the shared corpora location."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SR = 16_000
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def corpus_dir(name: str) -> Path:
    """Path of a shared corpus, or skip the test with the reason."""
    p = SHARED_DATA / name
    if not (p / "manifest.csv").is_file():
        pytest.skip(f"shared corpus {name!r} not found at {p} (tests read ../shared/data next to the repo)")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tone(freq: float = 440.0, duration: float = 1.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(duration * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def harmonic(f0: float, duration: float = 1.0, sr: int = SR, amp: float = 0.3, n: int = 8,
             vibrato: float = 0.0) -> np.ndarray:
    """A voiced-like harmonic complex (optionally with vibrato), a stand-in for speech in unit tests."""
    t = np.arange(int(duration * sr)) / sr
    f = f0 * (1 + vibrato * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, n + 1))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def noise(duration: float = 1.0, sr: int = SR, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(duration * sr))).astype(np.float32)


@pytest.fixture
def write_wav(tmp_path: Path) -> Callable[..., Path]:
    import soundfile as sf

    def _write(name: str, x: np.ndarray, sr: int = SR, **kw: object) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, x, sr, **kw)
        return p

    return _write


def make_synthetic_corpus(root: Path, n_speakers: int = 4, per_class: int = 4, seed: int = 0) -> Path:
    """A manifest corpus of three separable classes with several 'speakers' (base pitch differs)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    rows = ["path,label,speaker,gender"]
    for s in range(n_speakers):
        base = 110 + 25 * s
        for i in range(per_class):
            clips = {
                "calm": harmonic(base, 0.8, amp=0.1),
                "angry": harmonic(base * 1.8, 0.8, amp=0.6, n=20, vibrato=0.03),
                "fear": harmonic(base * 2.2, 0.8, amp=0.25, vibrato=0.08) + noise(0.8, amp=0.02, seed=i + 10 * s),
            }
            for label, x in clips.items():
                x = x * float(rng.uniform(0.7, 1.0))
                rel = f"spk{s}/{label}_{i}.wav"
                (root / f"spk{s}").mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, x, SR)
                rows.append(f"{rel},{label},spk{s},{'female' if s % 2 else 'male'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root
