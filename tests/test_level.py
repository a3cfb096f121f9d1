"""Level normalisation in front of an extractor (``vocalis.features.level``): gain-invariant features."""

from __future__ import annotations

import numpy as np
import pytest

from vocalis.danger.train import BAND_FEATURES
from vocalis.errors import ConfigError
from vocalis.features.base import from_config
from vocalis.features.level import LevelNormalized, active_level_db

SR = 16_000


def _voice(seconds: float = 2.0, amp: float = 0.3) -> np.ndarray:
    """Seeded harmonic tone with syllable-like bursts and a little noise."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(220 + 40 * np.sin(2 * np.pi * 2 * t)) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 10)) * (np.sin(2 * np.pi * 2.5 * t) > 0)
    x = x + 0.01 * rng.standard_normal(t.size)
    return (amp * x / np.abs(x).max()).astype(np.float32)


def _level_band() -> LevelNormalized:
    ex = from_config({"type": "level_normalized", "inner": BAND_FEATURES})
    assert isinstance(ex, LevelNormalized)
    return ex


def test_active_level_is_the_loud_part_in_dbfs() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 400 * np.arange(SR) / SR)).astype(np.float32)  # 8 periods a frame
    assert active_level_db(tone, SR) == pytest.approx(10 * np.log10(0.125), abs=0.05)  # mean square 0.125
    half_silent = np.concatenate([np.zeros(SR, np.float32), tone])  # pauses do not lower it
    assert active_level_db(half_silent, SR) == pytest.approx(active_level_db(tone, SR), abs=0.05)
    assert active_level_db(np.zeros(SR, np.float32), SR) == -120.0


def test_features_do_not_change_with_gain_within_the_limits() -> None:
    x = _voice()
    ex = _level_band()
    raw = from_config(BAND_FEATURES)
    ref = ex(x, SR)
    for db in (-24.0, -6.0, 6.0):
        y = (x * 10 ** (db / 20)).astype(np.float32)
        assert np.allclose(ex(y, SR), ref, rtol=1e-3, atol=1e-3), db
        # the inner features alone do move with gain (RMS, 0th MFCC): what the wrapper removes
        assert not np.allclose(raw(y, SR), raw(x, SR), rtol=1e-3, atol=1e-3), db


def test_gain_is_capped_so_near_silence_stays_quiet() -> None:
    ex = LevelNormalized(from_config(BAND_FEATURES), target_dbfs=-12.0, max_gain_db=12.0, max_cut_db=6.0)
    hiss = (1e-4 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)  # about -80 dBFS
    assert ex.gain_db(hiss, SR) == 12.0
    loud = _voice(amp=1.0)
    assert ex.gain_db(loud, SR) == -6.0
    assert -12.0 - 6.0 < active_level_db(loud, SR) + ex.gain_db(loud, SR) < 0.0


def test_config_round_trip_and_output_kind() -> None:
    ex = LevelNormalized(from_config({"type": "logmel"}), target_dbfs=-20.0, max_gain_db=10.0)
    cfg = ex.get_config()
    assert cfg["type"] == "level_normalized" and cfg["inner"]["type"] == "logmel" and cfg["target_dbfs"] == -20.0
    again = from_config(cfg)
    assert again.get_config() == cfg
    assert again.output == "frames"
    x = _voice()
    assert np.array_equal(again(x, SR), ex(x, SR))
    assert _level_band().output == "vector"


@pytest.mark.parametrize(("field", "value"), [("target_dbfs", 3.0), ("max_gain_db", -1.0), ("percentile", 0.0),
                                              ("frame_s", float("nan"))])
def test_bad_config_names_the_value_and_the_rule(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"{field}="):
        from_config({"type": "level_normalized", "inner": BAND_FEATURES, field: value})


def test_hot_mic_sets_the_active_level_and_clips_at_full_scale() -> None:
    from vocalis.danger.train import LEVEL_CHANNELS, apply_channel, hot_mic

    x = _voice(amp=0.05)
    for target in (-18.0, -12.0):
        y = hot_mic(x, target)
        assert active_level_db(y) == pytest.approx(target, abs=0.3)
        assert np.allclose(y / y.max(), x / x.max(), atol=1e-5)  # one gain, nothing clipped at these levels
    loud = hot_mic(x, -3.0)
    assert np.abs(loud).max() == pytest.approx(1.0) and np.mean(np.abs(loud) >= 1.0) > 0.01  # the peaks clip
    assert active_level_db(apply_channel(x, "loud_12")) == pytest.approx(LEVEL_CHANNELS["loud_12"], abs=0.3)
    assert np.array_equal(hot_mic(np.zeros(SR, np.float32), -6.0), np.zeros(SR, np.float32))  # silence stays


def test_loud_copy_is_louder_and_reproducible() -> None:
    from vocalis.danger.train import LOUD_COPY_DBFS, loud_copy

    x = _voice(amp=0.02)  # about -40 dBFS active: a quiet, distant voice
    a = loud_copy(x, np.random.default_rng(7))
    assert np.array_equal(a, loud_copy(x, np.random.default_rng(7)))
    levels = [active_level_db(loud_copy(x, np.random.default_rng(s))) for s in range(12)]
    # the channel's filters take off a few dB (a telephone band drops the low harmonics), never add many
    assert min(levels) > LOUD_COPY_DBFS[0] - 8.0 and max(levels) <= LOUD_COPY_DBFS[1] + 1.0
    assert np.std(levels) > 1.0  # a range of levels, not one
    assert np.abs(a).max() <= 1.0


def test_channel_augment_without_gain_keeps_the_level_and_the_filters() -> None:
    from vocalis.danger.train import channel_augment

    x = _voice(amp=0.3)
    for s in range(6):
        g = channel_augment(x, np.random.default_rng(s))
        n = channel_augment(x, np.random.default_rng(s), gain=False)
        assert active_level_db(n) > active_level_db(x) - 10.0  # only the filters' loss, no -12 dB draw
        ratio = g[np.abs(n) > 0.05] / n[np.abs(n) > 0.05]
        if np.abs(g).max() < 1.0:  # same filters: the gained copy is the other times one constant
            assert np.allclose(ratio, ratio[0], rtol=1e-3)
