"""Keyword matcher, file monitor (synthetic audio, tiny bundles), mic import guard, shipped scream bundle."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SR, corpus_dir, harmonic, noise
from tests.test_streaming import FakeSpotter, tiny_bundle
from vocalis.danger.keywords import KeywordMatcher, normalise
from vocalis.danger.monitor import monitor_file, monitor_mic
from vocalis.danger.policy import PolicyConfig
from vocalis.errors import ConfigError, DependencyError
from vocalis.streaming.predictor import StreamConfig

# -- keywords -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hits"),
    [("Help! Help me!", ["help"]), ("HELPPP", ["help"]), ("Bachao!", ["bachao"]), ("bacho bacho", ["bachao"]),
     ("Bachau", ["bachao"]), ("Batcher!", ["bachao"]), ("Bato!", ["bachao"]), ("But y'all.", ["bachao"]),
     ("But, y'all!", ["bachao"]), ("help, bachao", ["help", "bachao"]), ("Hell.", ["help"]),
     ("Kids are talking by the door", []), ("Say the word back", []), ("What the hell is that?", []),
     ("The bachelor party", []), ("", [])],
)
def test_default_matcher_is_tolerant_but_not_greedy(text: str, hits: list[str]) -> None:
    assert KeywordMatcher().match(text) == hits


def test_custom_keywords_and_variants() -> None:
    m = KeywordMatcher(("stop", "madad"), {"madad": [r"\bmada+d\w*"]})
    assert m.match("Stop it!") == ["stop"] and m.match("madaad karo") == ["madad"] and m.match("help") == []
    assert normalise("  Hélp!!  ME ") == "h lp me"
    with pytest.raises(ConfigError, match=r"keywords=.* must be a non-empty list"):
        KeywordMatcher(())
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        KeywordMatcher(("x",), {"x": ["("]})


# -- monitor --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    d = tmp_path_factory.mktemp("m")
    return tiny_bundle(d / "s.vocalis", ["non_scream", "scream"]), tiny_bundle(d / "e.vocalis", ["neutral", "fear"])


def test_monitor_file_yields_windows_and_events(bundles: tuple, write_wav: Callable[..., Path]) -> None:
    scream, emotion = bundles
    x = np.concatenate([noise(4.0, amp=0.002), harmonic(500, 3.0, amp=0.8), noise(5.0, amp=0.002, seed=2)])
    path = write_wav("s.wav", x)
    out = list(monitor_file(path, emotion_model=emotion, scream_model=scream, keyword_spotter=False,
                            policy_config={"countdown_s": 2.0, "cooldown_s": 5.0},
                            stream_config=StreamConfig(vad="energy")))
    assert all("type" in d and "t" in d for d in out)
    windows = [d for d in out if d["type"] == "window"]
    assert len(windows) == 21 and windows[0]["t"] == 2.0
    assert {"t_start", "probabilities", "voice", "scream", "risk", "keywords"} <= set(windows[0])
    kinds = [d["type"] for d in out if d["type"] != "window"]
    assert kinds[0] == "danger.started" and "alert" in kinds and "danger.ended" in kinds
    started = next(d for d in out if d["type"] == "danger.started")
    assert 4.0 < started["t"] <= 6.5  # the loud part starts at 4 s
    ts = [d["t"] for d in out]
    assert ts == sorted(ts)


def test_monitor_file_runs_out_a_pending_countdown(bundles: tuple, write_wav: Callable[..., Path]) -> None:
    scream, _ = bundles
    path = write_wav("end.wav", np.concatenate([noise(2.0, amp=0.002), harmonic(500, 2.5, amp=0.8)]))
    out = list(monitor_file(path, emotion_model=False, scream_model=scream, keyword_spotter=False,
                            policy_config=PolicyConfig(countdown_s=30.0)))
    assert out[-2]["type"] == "alert" and out[-2]["t"] > 30.0
    # the file ends during the episode: it is closed, so every danger.started has its danger.ended
    assert out[-1]["type"] == "danger.ended" and out[-1]["reason"] == "end of stream"
    assert [d["type"] for d in out].count("danger.started") == 1


def test_monitor_file_keywords_and_speed(bundles: tuple, write_wav: Callable[..., Path]) -> None:
    import time

    scream, _ = bundles
    path = write_wav("k.wav", harmonic(300, 2.5, sr=22_050, amp=0.7), sr=22_050)
    t0 = time.monotonic()
    out = list(monitor_file(path, speed=5.0, emotion_model=False, scream_model=scream,
                            keyword_spotter=FakeSpotter(), stream_config=StreamConfig(asr_voice_trigger=0.0, asr_level_db=-30.0)))
    assert time.monotonic() - t0 >= 2.5 / 5.0 * 0.8  # paced
    w = [d for d in out if d["type"] == "window"]
    assert w[0]["keywords"] == ["help"] and w[0]["transcript"] == "help!"
    with pytest.raises(ConfigError, match="speed=-1 must be >= 0"):
        next(monitor_file(path, speed=-1))
    with pytest.raises(ConfigError, match="chunk_s=0 must be between"):
        next(monitor_file(path, chunk_s=0))


def test_monitor_mic_needs_sounddevice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails even where it is installed
    with pytest.raises(DependencyError, match=r"pip install 'vocalis\[mic\]'"):
        next(monitor_mic())


# -- shipped scream detector on real clips ---------------------------------------------------


@pytest.mark.corpus
def test_shipped_scream_detector_on_real_clips() -> None:
    from vocalis.audio.io import load_audio
    from vocalis.danger.detector import load_scream_detector

    screams = corpus_dir("screams")
    ravdess = corpus_dir("ravdess")
    d = load_scream_detector()
    for b in (d.first, d.confirm):
        assert b is not None and b.labels == ["non_scream", "scream"] and "held_out" in b.manifest.metrics
    rows = [line.split(",") for line in (screams / "manifest.csv").read_text().splitlines()[1:]]
    pick = {sub: [r[0] for r in rows if r[3] == sub][:4] for sub in ("scream_background", "quiet_background")}
    p_scream = [d.score(load_audio(screams / f)) for f in pick["scream_background"]]
    p_quiet = [d.score(load_audio(screams / f)) for f in pick["quiet_background"]]
    angry = load_audio(ravdess / "Actor_01" / "03-01-05-02-01-01-01.flac")  # strong-intensity angry speech
    on = PolicyConfig().on_threshold
    assert np.mean(p_scream) > on > max(p_quiet)
    assert d.score(angry) < on
    # a stream's silent windows go through the detector too
    assert d.score(np.zeros(2 * SR, np.float32)) < on


@pytest.mark.corpus
@pytest.mark.parametrize("channel", ["lowpass_7k", "telephone_8k"])
def test_shipped_scream_detector_is_robust_to_band_limiting(channel: str) -> None:
    """Browsers, phones and headsets cut the top band (Chromium's fake mic: 7-8 kHz; telephone: 3.4 kHz).

    The detector used to call quiet background noise a scream once that band was gone (P ~0.6-1.0).
    Non-danger clips are scored per 2 s window (what the streaming predictor scores) and as whole
    clips; a scream clip counts as found when one of its 2 s windows reaches the policy's threshold.
    """
    from vocalis.audio.io import load_audio
    from vocalis.danger.detector import load_scream_detector
    from vocalis.danger.policy import PolicyConfig
    from vocalis.danger.train import crops, lowpass, telephone

    screams = corpus_dir("screams")
    d = load_scream_detector()
    rows = [line.split(",") for line in (screams / "manifest.csv").read_text().splitlines()[1:]]

    def scores(path: str) -> tuple[np.ndarray, float]:
        x = load_audio(screams / path)
        y = lowpass(x, 7000.0, 8) if channel == "lowpass_7k" else telephone(x)
        return d.score_batch(crops(y, step_s=0.5)), d.score(y)

    def pick(sub: str, n: int) -> list[str]:
        paths = [r[0] for r in rows if r[3] == sub]
        return paths[:: max(1, len(paths) // n)][:n]

    calm = [scores(f) for f in pick("quiet_background", 8) + pick("calm_call", 8)]
    windows = np.concatenate([w for w, _ in calm])
    whole = np.array([p for _, p in calm])
    loud = np.array([scores(f)[0].max() for f in pick("scream_call", 10)])
    assert np.mean(windows < 0.3) >= 0.9, windows
    assert np.mean(whole < 0.3) >= 0.9, whole
    assert np.mean(loud >= PolicyConfig().on_threshold) >= 0.8, loud
