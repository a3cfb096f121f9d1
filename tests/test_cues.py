"""Scream cues (band-limited pitch / harmonicity / flatness / loudness dynamics) on synthetic signals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SR, harmonic, noise, tone
from vocalis.danger.train import lowpass, telephone
from vocalis.errors import ConfigError
from vocalis.features.base import from_config
from vocalis.features.cues import CUE_NAMES, ScreamCues

IDX = {n: i for i, n in enumerate(CUE_NAMES)}


def cues(x: np.ndarray, sr: int = SR) -> dict[str, float]:
    v = ScreamCues()(x, sr)
    assert v.shape == (len(CUE_NAMES),) and v.dtype == np.float32 and np.isfinite(v).all()
    return {n: float(v[i]) for n, i in IDX.items()}


@pytest.mark.parametrize("f0", [150.0, 300.0, 800.0, 1200.0])
def test_pitch_and_harmonicity_of_a_harmonic_tone(f0: float) -> None:
    c = cues(harmonic(f0, 2.0, n=6))
    assert c["f0_mean"] == pytest.approx(np.log2(f0), abs=0.08)
    assert c["harmonicity_mean"] > 0.85 and c["voiced_fraction"] > 0.95
    assert c["high_fraction"] == (1.0 if f0 >= 400 else 0.0)
    assert c["longest_voiced_s"] > 1.9 and c["energy_range_db"] < 3.0


def test_noise_is_unvoiced_and_flat() -> None:
    n, h = cues(noise(2.0)), cues(harmonic(300.0, 2.0))
    assert n["voiced_fraction"] < 0.2 and n["harmonicity_mean"] < 0.45
    assert n["flatness_mean"] > h["flatness_mean"] + 1.0  # log10 units: white noise is far flatter


def test_choppy_speech_like_bursts_differ_from_a_sustained_voice() -> None:
    burst = harmonic(250.0, 2.0)
    burst[(np.arange(burst.size) // 2400) % 2 == 1] *= 0.001  # 150 ms on / off
    b, s = cues(burst), cues(harmonic(250.0, 2.0))
    assert b["energy_range_db"] > 30 and b["energy_flux_db"] > s["energy_flux_db"]
    assert b["longest_active_s"] < 0.3 < s["longest_active_s"]


def test_gain_and_top_band_do_not_move_the_cues() -> None:
    x = harmonic(350.0, 2.0, n=20, vibrato=0.02) + noise(2.0, amp=0.01)
    ref = ScreamCues()(x)
    assert np.allclose(ScreamCues()(x * 0.05), ref, atol=1e-3)  # relative measures only
    assert np.allclose(ScreamCues()(lowpass(x, 7000.0, 8)), ref, atol=0.05)  # nothing above 4 kHz is used
    tel = ScreamCues()(telephone(x))
    assert tel[IDX["f0_mean"]] == pytest.approx(ref[IDX["f0_mean"]], abs=0.05)


@pytest.mark.parametrize("x", [np.zeros(2 * SR, np.float32), np.zeros(100, np.float32), np.ones(2 * SR, np.float32),
                               np.clip(tone(500.0, 2.0, amp=5.0), -1, 1), np.array([np.nan, 1.0, np.inf], np.float32)],
                         ids=["silence", "short", "dc", "clipped", "nonfinite"])
def test_finite_on_degenerate_input(x: np.ndarray) -> None:
    cues(x)


def test_config_round_trip_and_validation() -> None:
    ex = ScreamCues(fmax=3400.0, high_hz=500.0)
    again = from_config(ex.get_config())
    assert again == ex and again.get_config()["type"] == "cues" and ex.dim == len(ex.feature_names()) == 20
    y = harmonic(600.0, 1.0, sr=8000, n=6)
    assert cues(y, 8000)["f0_mean"] == pytest.approx(np.log2(600.0), abs=0.08)  # resampled to 16 kHz first
    with pytest.raises(ConfigError, match=r"fmax=9000.0 must satisfy"):
        ScreamCues(fmax=9000.0)
    with pytest.raises(ConfigError, match=r"f0_min=20.0, f0_max=1600.0 must satisfy"):
        ScreamCues(f0_min=20.0)


def _windows() -> np.ndarray:
    burst = harmonic(250.0, 2.0)
    burst[(np.arange(burst.size) // 2400) % 2 == 1] *= 0.001
    return np.stack([harmonic(300.0, 2.0), harmonic(900.0, 2.0, n=4, vibrato=0.03), noise(2.0), burst,
                     np.zeros(2 * SR, np.float32), np.clip(tone(500.0, 2.0, amp=5.0), -1, 1)])


def test_batch_is_the_same_as_one_window_at_a_time() -> None:
    w = _windows()
    ex = ScreamCues()
    assert np.allclose(ex.batch(w), np.stack([ex(x) for x in w]), atol=1e-5)
    assert ex.batch(w[:0]).shape == (0, 20)
    with pytest.raises(ConfigError, match=r"audios.shape=\(32000,\) must be"):
        ex.batch(w[0])


def test_the_scream_detector_features_share_one_spectrum(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a batch the cues reuse the MFCC part's power spectrum (same frames): same numbers, one FFT."""
    from vocalis.danger.train import BAND_CUE_FEATURES

    ex = from_config(BAND_CUE_FEATURES)
    w = _windows()
    one_by_one = np.stack([ex(x) for x in w])

    def no_own_fft(*a: object, **k: object) -> None:
        raise AssertionError("the cues computed their own STFT")

    monkeypatch.setattr(ScreamCues, "_frame_values", no_own_fft)
    batched = ex.batch(w)  # type: ignore[attr-defined]
    assert batched.shape == one_by_one.shape == (len(w), 143)
    assert np.allclose(batched, one_by_one, rtol=1e-4, atol=1e-4)
