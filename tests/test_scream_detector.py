"""The two-stage scream detector (``vocalis.danger.detector``): the second stage decides above the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import harmonic, noise
from tests.test_streaming import tiny_bundle
from vocalis.bundle.runtime import Bundle
from vocalis.danger.detector import ScreamDetector, load_scream_detector
from vocalis.errors import ConfigError, ModelError
from vocalis.streaming.predictor import StreamConfig, StreamingPredictor


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, Bundle]:
    d = tmp_path_factory.mktemp("cascade")
    first = tiny_bundle(d / "first.vocalis", ["non_scream", "scream"])
    # the same head with its labels swapped: P(scream) = 1 - the first's, so every replaced score shows
    flipped = tiny_bundle(d / "confirm.vocalis", ["scream", "non_scream"])
    return first, flipped


def _windows() -> list[np.ndarray]:
    return [noise(2.0, amp=0.002, seed=1), harmonic(320.0, 2.0, amp=0.6), noise(2.0, amp=0.004, seed=2),
            harmonic(360.0, 2.0, amp=0.4)]


def test_second_stage_scores_only_windows_at_or_above_the_gate(stages: tuple[Bundle, Bundle]) -> None:
    first, confirm = stages
    w = _windows()
    p1 = ScreamDetector(first).score_batch(w)
    assert p1[0] < 0.2 and p1[2] < 0.2 and p1[1] > 0.8 and p1[3] > 0.8  # quiet noise low, loud voice high
    two = ScreamDetector(first, confirm, gate=0.5)
    p = two.score_batch(w)
    assert np.allclose(p[[0, 2]], p1[[0, 2]])  # below the gate: the first stage's score stands
    assert np.allclose(p[[1, 3]], 1.0 - p1[[1, 3]], atol=1e-5)  # at or above: the second stage's
    assert two.score(w[1]) == pytest.approx(p[1], abs=1e-5)
    everything = ScreamDetector(first, confirm, gate=0.0).score_batch(w)
    assert np.allclose(everything, 1.0 - p1, atol=1e-5)
    assert ScreamDetector(first, confirm, gate=0.5).score_batch([]).shape == (0,)


def test_a_predictor_scores_windows_through_the_detector(stages: tuple[Bundle, Bundle]) -> None:
    first, confirm = stages
    x = np.concatenate([noise(2.0, amp=0.002), harmonic(320.0, 2.0, amp=0.6)])
    runs = {}
    for name, det in (("one", ScreamDetector(first)), ("two", ScreamDetector(first, confirm, gate=0.5))):
        p = StreamingPredictor(StreamConfig(vad="energy"), emotion_model=False, scream_model=det,
                               keyword_spotter=False)
        runs[name] = np.array([r.scream for r in p.push(x, 16_000)])
    loud = runs["one"] >= 0.5
    assert loud.any() and (~loud).any()
    assert np.allclose(runs["two"][~loud], runs["one"][~loud])
    assert np.allclose(runs["two"][loud], 1.0 - runs["one"][loud], atol=1e-5)


def test_bad_gate_or_labels_are_refused_with_the_rule(stages: tuple[Bundle, Bundle], tmp_path: Path) -> None:
    first, confirm = stages
    with pytest.raises(ConfigError, match=r"gate=None must be a number in \[0, 1\).*metrics.cascade_gate"):
        ScreamDetector(first, confirm)  # a second stage without a gate in its manifest
    with pytest.raises(ConfigError, match=r"gate=1.5 must be"):
        ScreamDetector(first, confirm, gate=1.5)
    emo = tiny_bundle(tmp_path / "emo.vocalis", ["calm", "angry"])
    with pytest.raises(ModelError, match=r"labels=\['calm', 'angry'\] must include 'scream'"):
        ScreamDetector(first, emo, gate=0.1)


def test_the_packaged_detector_has_both_stages_and_the_policy_uses_its_operating_point() -> None:
    """The service and ``vocalis monitor`` use PolicyConfig() as is: its on_threshold must be the
    operating point of the stage that decides (the second), chosen on its training side."""
    from vocalis.danger.policy import PolicyConfig
    from vocalis.danger.train import CASCADE_GATE, CONFIRM_CANDIDATE, DEFAULT_CANDIDATE

    d = load_scream_detector()
    assert d.confirm is not None and d.gate == CASCADE_GATE
    assert d.first.manifest.recipe["name"] == DEFAULT_CANDIDATE
    assert d.confirm.manifest.recipe["name"] == CONFIRM_CANDIDATE
    m = d.confirm.manifest.metrics
    assert PolicyConfig().on_threshold == pytest.approx(m["operating_point"]) == pytest.approx(d.operating_point)
    assert m["validation"]["threshold"] == pytest.approx(m["operating_point"])
    assert d.gate < d.operating_point
    # a first stage given alone is one stage: the packaged second one was gated on the packaged first
    assert load_scream_detector(d.first).confirm is None


def test_triage_workers_build_the_two_stage_detector(stages: tuple[Bundle, Bundle]) -> None:
    from vocalis.triage.batch import AnalyzerSpec

    first, confirm = stages
    packaged = AnalyzerSpec(asr_model=None).build().scream
    assert packaged is not None and packaged.confirm is not None  # the default: both packaged stages
    with pytest.raises(ConfigError, match=r"scream_confirm_model='c.vocalis' needs a scream_model path, not None"):
        AnalyzerSpec(asr_model=None, scream_confirm_model="c.vocalis").build()
    # a second stage without a gate in its manifest is refused, naming the rule
    with pytest.raises(ConfigError, match=r"metrics.cascade_gate"):
        AnalyzerSpec(asr_model=None, scream_model=first.source, scream_confirm_model=confirm.source).build()


def test_a_detector_given_to_the_monitor_brings_its_operating_point(tmp_path: Path) -> None:
    """The packaged threshold belongs to the packaged detector; another one is judged at its own."""
    from vocalis.danger.monitor import _pipeline
    from vocalis.danger.policy import PolicyConfig

    own = tiny_bundle(tmp_path / "own.vocalis", ["non_scream", "scream"],
                      metrics={"operating_point": 0.8, "split": "test"})
    _, policy = _pipeline(StreamConfig(vad="energy"), False, own, False, None)
    assert policy.config.on_threshold == 0.8 and policy.config.off_threshold == PolicyConfig().off_threshold
    _, policy = _pipeline(StreamConfig(vad="energy"), False, own, False, {"on_threshold": 0.3, "countdown_s": 5})
    assert policy.config.on_threshold == 0.3  # named by the caller: kept
    _, policy = _pipeline(StreamConfig(vad="energy"), False, None, False, None)
    assert policy.config.on_threshold == PolicyConfig().on_threshold  # the packaged detector: the default


def test_monitor_cli_refuses_a_second_stage_without_its_first(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vocalis.cli import app

    f = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(f, noise(1.0), 16_000)
    res = CliRunner().invoke(app, ["monitor", "--file", str(f), "--scream-confirm-model", str(f)])
    assert res.exit_code == 2 and "--scream-confirm-model needs --scream-model" in res.output
