"""The slow gain in front of the scream detector (vocalis.streaming.gain) and its wiring in the predictor."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import harmonic
from tests.test_streaming import tiny_bundle
from vocalis.bundle.runtime import Bundle
from vocalis.errors import ConfigError
from vocalis.features.level import active_level_db
from vocalis.streaming.gain import GainConfig, StreamGain
from vocalis.streaming.predictor import StreamConfig, StreamingPredictor

HOP = 0.5


def feed(g: StreamGain, levels: list[float], voice: float = 1.0, t0: float = 2.0) -> list[float]:
    return [g.push(lv, voice, t0 + HOP * i, HOP) for i, lv in enumerate(levels)]


def test_no_gain_until_enough_voice_then_the_median_goes_to_the_target() -> None:
    g = StreamGain(GainConfig(target_dbfs=-18.0, min_voiced_s=10.0))
    out = feed(g, [-6.0] * 25)
    assert out[:20] == [0.0] * 20  # 20 voiced hops of 0.5 s = 10 s are needed first
    assert out[20] == pytest.approx(-12.0)
    assert g.reference_db == pytest.approx(-6.0)


def test_unvoiced_windows_do_not_count() -> None:
    g = StreamGain(GainConfig(min_voiced_s=5.0))
    assert feed(g, [-3.0] * 40, voice=0.2) == [0.0] * 40
    assert g.reference_db is None


def test_attenuation_only_by_default_and_limited() -> None:
    quiet = StreamGain()
    assert feed(quiet, [-40.0] * 30)[-1] == 0.0  # a quiet microphone is not raised
    boost = StreamGain(GainConfig(max_boost_db=6.0))
    assert feed(boost, [-40.0] * 30)[-1] == pytest.approx(6.0)
    hot = StreamGain(GainConfig(max_cut_db=10.0))
    assert feed(hot, [0.0] * 30)[-1] == pytest.approx(-10.0)


def test_a_short_scream_barely_moves_the_reference_and_is_not_its_own_reference() -> None:
    g = StreamGain()
    feed(g, [-6.0] * 120)  # a minute of hot-microphone speech
    before = g.gain_db(HOP)
    during = [g.push(0.0, 1.0, 62.0 + HOP * i, HOP) for i in range(6)]  # 3 s of screaming
    assert during == [pytest.approx(before)] * 6


def test_memory_forgets_old_windows() -> None:
    g = StreamGain(GainConfig(memory_s=20.0, min_voiced_s=5.0))
    feed(g, [-6.0] * 40)  # 20 s loud
    out = feed(g, [-30.0] * 60, t0=22.0)  # then 30 s quiet
    assert out[0] == pytest.approx(-12.0)
    assert out[-1] == 0.0  # the loud part is forgotten


def test_reset_forgets_everything() -> None:
    g = StreamGain()
    feed(g, [-6.0] * 40)
    g.reset()
    assert g.reference_db is None and g.gain_db(HOP) == 0.0


@pytest.mark.parametrize(("kw", "match"), [
    ({"target_dbfs": 3.0}, "target_dbfs=3.0 must be between -60 and 0"),
    ({"memory_s": 1.0}, "memory_s=1.0 must be between 5 and 3600"),
    ({"min_voiced_s": 500.0}, "min_voiced_s=500.0 must be between 0 and memory_s"),
    ({"max_cut_db": -1.0}, "max_cut_db=-1.0 must be between 0 and 60"),
    ({"voice_threshold": float("nan")}, "voice_threshold=nan must be between 0 and 1"),
])
def test_config_errors_name_the_value_and_the_rule(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GainConfig(**kw)


def test_stream_config_checks_the_gain_type() -> None:
    with pytest.raises(ConfigError, match=r"level_gain=.* must be a GainConfig"):
        StreamConfig(level_gain={"target_dbfs": -18})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scream_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return tiny_bundle(tmp_path_factory.mktemp("g") / "scream.vocalis", ["non_scream", "scream"])


def _predictor(bundle: Bundle, gain: GainConfig | None) -> StreamingPredictor:
    return StreamingPredictor(StreamConfig(asr="off", vad="energy", level_gain=gain), emotion_model=False,
                              scream_model=bundle, keyword_spotter=False)


def test_the_predictor_scores_the_scream_detector_on_the_turned_down_window(scream_bundle: Bundle) -> None:
    loud = harmonic(250, 30.0, amp=0.7)  # a steady loud tone: "voiced" for the energy VAD
    off = _predictor(scream_bundle, None).push(loud)
    on = _predictor(scream_bundle, GainConfig(min_voiced_s=5.0)).push(loud)
    assert [w.gain_db for w in off] == [0.0] * len(off)
    level = active_level_db(loud[: 32000])
    turned = [w for w in on if w.gain_db != 0.0]
    assert turned and turned[0].t_end <= 8.0  # 5 s of voiced hops, then the gain
    assert turned[-1].gain_db == pytest.approx(-18.0 - level, abs=0.05)
    # the detector heard the quieter copy: the tiny model's P(scream) falls with level
    assert turned[-1].scream < off[-1].scream
    p = _predictor(scream_bundle, GainConfig(min_voiced_s=5.0))
    pending = p.advance(loud)
    assert pending[-1].scream_audio == pytest.approx(pending[-1].audio * 10 ** (pending[-1].gain_db / 20), rel=1e-5)
    assert p.score_scream(pending[-1]) == pytest.approx(turned[-1].scream, abs=1e-5)


def test_reset_restarts_the_gain(scream_bundle: Bundle) -> None:
    p = _predictor(scream_bundle, GainConfig(min_voiced_s=5.0))
    loud = harmonic(250, 12.0, amp=0.7)
    assert p.push(loud)[-1].gain_db < 0
    p.reset()
    assert p.push(loud[:32000])[0].gain_db == 0.0
    assert np.isfinite(p.push(loud)[-1].scream)


def test_the_streams_level_is_tracked_without_the_gain(scream_bundle: Bundle) -> None:
    loud = harmonic(250, 16.0, amp=0.7)
    ws = _predictor(scream_bundle, None).push(loud)
    assert all(w.gain_db == 0.0 for w in ws)
    refs = [w.level_ref_db for w in ws]
    assert refs[0] is None  # nothing heard yet
    assert refs[-1] == pytest.approx(active_level_db(loud[:32000]), abs=0.05)
    first = next(i for i, r in enumerate(refs) if r is not None)
    assert all(r is None for r in refs[:first]) and ws[first].t_end >= 2.0 + 10.0 - 0.5  # 10 s of voiced hops


def test_the_reference_is_the_median_of_the_remembered_voiced_windows() -> None:
    rng = np.random.default_rng(0)
    g = StreamGain(GainConfig(memory_s=10.0, min_voiced_s=0.0))
    kept: list[tuple[float, float]] = []
    for i in range(200):
        t, lv, voice = 2.0 + HOP * i, float(rng.normal(-20, 6)), float(rng.uniform())
        g.push(lv, voice, t, HOP)
        kept = [(a, b) for a, b in kept if a > t - 10.0] + ([(t, lv)] if voice >= 0.5 else [])
        assert g.reference_db == (pytest.approx(float(np.median([b for _, b in kept]))) if kept else None)


def test_active_level_matches_the_percentile_definition() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(32000) * np.repeat(rng.uniform(0.001, 0.5, 100), 320)).astype(np.float32)
    frames = x.reshape(-1, 320).astype(np.float64)
    expected = float(np.percentile(10 * np.log10(np.mean(frames**2, axis=1)), 95))
    assert active_level_db(x) == pytest.approx(expected, abs=1e-4)
