"""StreamingPredictor and its ring buffer / VAD on synthetic signals (tiny bundles trained in tmp)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SR, harmonic, noise
from vocalis.audio.vad import EnergyVAD, silero_onnx_path
from vocalis.bundle.manifest import Manifest
from vocalis.bundle.runtime import Bundle, load_bundle, save_bundle
from vocalis.errors import AudioError, ConfigError, ModelError
from vocalis.streaming.predictor import StreamConfig, StreamingPredictor
from vocalis.streaming.ring import RingBuffer

TINY_FEATURES = {"type": "classic", "features": ["rms", "zcr"], "stats": ["mean", "max"], "n_mels": 40,
                 "n_mfcc": 13}


def tiny_bundle(path: Path, labels: list[str], features: dict | None = None, metrics: dict | None = None) -> Bundle:
    """A logistic regression on RMS/ZCR statistics: loud -> last label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from vocalis.features.base import from_config
    from vocalis.models.heads import sklearn_to_onnx

    ex = from_config(dict(features or TINY_FEATURES))
    quiet = [ex(noise(2.0, amp=a, seed=i)) for i, a in enumerate(np.linspace(0.001, 0.01, 8))]
    loud = [ex(harmonic(300 + 20 * i, 2.0, amp=a)) for i, a in enumerate(np.linspace(0.3, 0.8, 8))]
    X = np.stack(quiet + loud)
    k = len(labels)
    y = np.array([0] * 8 + [k - 1] * 8)
    if k > 2:  # every class needs examples
        X = np.concatenate([X] + [X[:1] * (1 + 0.01 * j) for j in range(1, k - 1)])
        y = np.concatenate([y, np.arange(1, k - 1)])
    est = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=500))]).fit(X, y)
    onnx = sklearn_to_onnx(est, X.shape[1])
    save_bundle(path, Manifest(labels=labels, features=ex.get_config(), name=path.stem, metrics=metrics or {}), onnx)
    return load_bundle(path)


@pytest.fixture(scope="module")
def scream_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return tiny_bundle(tmp_path_factory.mktemp("b") / "scream.vocalis", ["non_scream", "scream"])


@pytest.fixture(scope="module")
def emotion_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return tiny_bundle(tmp_path_factory.mktemp("e") / "emo.vocalis", ["neutral", "angry", "fear"])


def make(scream_bundle: Bundle, **kw: object) -> StreamingPredictor:
    emotion = kw.pop("emotion_model", False)
    spotter = kw.pop("keyword_spotter", False)
    return StreamingPredictor(StreamConfig(**kw), emotion_model=emotion, scream_model=scream_bundle,  # type: ignore[arg-type]
                              keyword_spotter=spotter)


def feed(p: StreamingPredictor, x: np.ndarray, chunk: int, sr: int = SR) -> list:
    out = []
    for i in range(0, x.size, chunk):
        out += p.push(x[i : i + chunk], sr)
    return out


# -- ring buffer ----------------------------------------------------------------------------


def test_ring_keeps_only_the_newest_samples() -> None:
    r = RingBuffer(5)
    r.extend(np.arange(3, dtype=np.float32))
    assert r.latest(5).tolist() == [0, 0, 0, 1, 2]  # zero-filled front
    r.extend(np.arange(3, 9, dtype=np.float32))
    assert r.latest().tolist() == [4, 5, 6, 7, 8] and r.total == 9 and len(r) == 5
    for _ in range(7):
        r.extend(np.array([1.0, 2.0], np.float32))
    assert r.latest(2).tolist() == [1.0, 2.0]
    assert r._buf.size == 5  # bounded
    with pytest.raises(ConfigError, match="capacity"):
        RingBuffer(0)
    with pytest.raises(ConfigError, match="between 0 and capacity=5"):
        r.latest(6)


# -- windows and timing ---------------------------------------------------------------------


def test_one_window_per_hop_with_stream_times(scream_bundle: Bundle) -> None:
    p = make(scream_bundle)
    res = feed(p, noise(5.0, amp=0.01), 1234)
    ends = [w.t_end for w in res]
    assert ends == pytest.approx([2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0])
    assert all(w.t_end - w.t_start == pytest.approx(2.0) for w in res)
    assert p.flush() == []  # ended exactly on a window end: nothing partial left


def test_chunk_size_and_rate_do_not_change_results(scream_bundle: Bundle) -> None:
    import soxr

    x16 = np.concatenate([noise(1.5, amp=0.005), harmonic(400, 2.0, amp=0.6), noise(1.5, amp=0.005, seed=3)])
    x44 = soxr.resample(x16, SR, 44_100).astype(np.float32)
    a = feed(make(scream_bundle, vad="energy"), x44, 441, 44_100)
    b = feed(make(scream_bundle, vad="energy"), x44, 9999, 44_100)
    c = make(scream_bundle, vad="energy").push(x44, 44_100)
    assert [w.t_end for w in a] == [w.t_end for w in b] == [w.t_end for w in c]
    np.testing.assert_allclose([w.scream for w in a], [w.scream for w in b], atol=1e-5)
    np.testing.assert_allclose([w.scream for w in a], [w.scream for w in c], atol=1e-5)
    # the loud middle scores as "scream", the quiet start does not
    assert a[0].scream < 0.5 < max(w.scream for w in a)


def test_flush_emits_partial_last_window_and_resets(scream_bundle: Bundle) -> None:
    p = make(scream_bundle)
    assert p.push(noise(1.0, amp=0.01), SR) == []
    last = p.flush()
    assert len(last) == 1 and last[0].partial and last[0].t_end == pytest.approx(1.0)
    assert p.samples_seen == 0
    res = feed(p, noise(2.2, amp=0.01), 800)
    assert [w.t_end for w in res] == [2.0]
    tail = p.flush()
    assert len(tail) == 1 and tail[0].t_end == pytest.approx(2.2) and tail[0].partial


def test_reset_restarts_time(scream_bundle: Bundle) -> None:
    p = make(scream_bundle)
    feed(p, noise(3.0), 1600)
    p.reset()
    assert [w.t_end for w in feed(p, noise(2.0), 1600)] == [2.0]


def test_hop_and_window_are_configurable(scream_bundle: Bundle) -> None:
    res = feed(make(scream_bundle, window_s=1.0, hop_s=0.25), noise(2.0), 500)
    assert [w.t_end for w in res] == pytest.approx([1.0, 1.25, 1.5, 1.75, 2.0])


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"window_s": 0.1}, r"window_s=0.1 must be between 0.5 and 10"),
     ({"hop_s": 0.333}, r"hop_s=0.333 must be a multiple of 0.01 s .*e.g. 0.25, 0.5, 1.0"),
     ({"hop_s": 3.0}, r"hop_s=3.0 .* window_s=2.0"),
     ({"emotion_every": -1}, r"emotion_every=-1 must be an integer >= 0"),
     ({"asr": "sometimes"}, r"asr='sometimes' must be one of \('off', 'auto', 'always'\)"),
     ({"vad": "webrtc"}, r"vad='webrtc' must be one of")],
)
def test_config_errors_name_value_and_allowed(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        StreamConfig(**kw)


def test_bad_audio_is_rejected_with_the_rule(scream_bundle: Bundle) -> None:
    p = make(scream_bundle)
    bad = noise(0.1)
    bad[5] = np.nan
    with pytest.raises(AudioError, match=r"non-finite.*must be finite"):
        p.push(bad, SR)
    with pytest.raises(AudioError, match="sample_rate=500 must be between 1000"):
        p.push(noise(0.1), 500)
    with pytest.raises(AudioError, match="must be 1 \\(mono\\) or 2"):
        p.push(np.zeros((2, 2, 2), np.float32), SR)
    with pytest.raises(AudioError, match="dtype=<U1 must be float32"):
        p.push(np.array(["a"]), SR)
    with pytest.raises(AudioError, match="at most 60 s"):
        p.push(np.zeros(61 * SR, np.float32), SR)
    p.push(noise(0.1), SR)
    with pytest.raises(AudioError, match=r"sample_rate=8000 must stay 16000 Hz.*reset"):
        p.push(noise(0.1), 8000)


def test_int16_and_stereo_chunks_are_accepted(scream_bundle: Bundle) -> None:
    x = harmonic(300, 2.0, amp=0.5)
    pcm = (x * 32767).astype(np.int16)
    stereo = np.stack([x, x], axis=1)
    a = make(scream_bundle).push(pcm, SR)
    b = make(scream_bundle).push(stereo, SR)
    assert a[0].scream == pytest.approx(b[0].scream, abs=1e-3)


# -- components -----------------------------------------------------------------------------


def test_emotion_every_k_hops(scream_bundle: Bundle, emotion_bundle: Bundle) -> None:
    res = feed(make(scream_bundle, emotion_model=emotion_bundle, emotion_every=3), harmonic(250, 4.0), 1600)
    assert [w.emotion_fresh for w in res] == [True, False, False, True, False]
    assert set(res[1].probabilities) == {"neutral", "angry", "fear"}
    assert res[1].probabilities == res[0].probabilities
    none = feed(make(scream_bundle, emotion_model=False), harmonic(250, 2.0), 1600)
    assert none[0].probabilities == {} and "emotion" not in none[0].timings_ms



def test_backbone_scream_head_rides_on_the_emotion_pass_and_is_held(
        scream_bundle: Bundle, emotion_bundle: Bundle, tmp_path: Path) -> None:
    """A second scream head on the emotion model's features: computed with every emotion run and
    held over the windows that overlap that run's window, never longer."""
    head = tiny_bundle(tmp_path / "bb.vocalis", ["non_scream", "scream"])  # the emotion bundle's features
    x = np.concatenate([harmonic(300, 2.0, amp=0.6), noise(6.0, amp=0.003)])  # loud, then quiet
    res = feed(make(scream_bundle, emotion_model=emotion_bundle, emotion_every=4, vad="energy"), x, 1600)
    assert all(r.scream_backbone is None for r in res)  # no head by default
    p = StreamingPredictor(StreamConfig(emotion_every=4, vad="energy"), emotion_model=emotion_bundle,
                           scream_model=scream_bundle, keyword_spotter=False, backbone_scream_model=head)
    res = feed(p, x, 1600)
    assert [r.t_end for r in res] == [2.0 + 0.5 * i for i in range(13)]
    assert [r.emotion_fresh for r in res] == [i % 4 == 0 for i in range(13)]
    for i, r in enumerate(res):  # each value is the last emotion window's, held over the 3 windows after it
        assert r.scream_backbone == res[4 * (i // 4)].scream_backbone
    assert res[0].scream_backbone == pytest.approx(head.predict_proba(x[: 2 * SR])[1], abs=1e-5)
    assert res[0].scream_backbone > 0.5 > res[4].scream_backbone  # the loud first window, then quiet
    # shed the emotion run at hop 4: hop 3 still overlaps hop 0's window, hop 4 no longer does
    q = StreamingPredictor(StreamConfig(emotion_every=4, vad="energy"), emotion_model=emotion_bundle,
                           scream_model=scream_bundle, keyword_spotter=False, backbone_scream_model=head)
    ws = q.advance(x[: 4 * SR])
    probs, bb = q.score_shared(ws[0])
    assert bb == pytest.approx(res[0].scream_backbone, abs=1e-5)
    assert np.allclose(probs, q.score_emotion(ws[0]))
    out = [q.complete(ws[0], 0.0, probs, backbone=bb)] + [q.complete(w, 0.0) for w in ws[1:]]
    assert [o.scream_backbone is not None for o in out] == [True, True, True, True, False]
    assert out[4].emotion_deferred
    none = StreamingPredictor(StreamConfig(emotion_every=4, vad="energy"), emotion_model=emotion_bundle,
                              scream_model=scream_bundle, keyword_spotter=False, backbone_scream_model=False)
    assert all(r.scream_backbone is None for r in feed(none, x, 1600))


def test_backbone_head_must_read_the_emotion_models_features(
        scream_bundle: Bundle, emotion_bundle: Bundle, tmp_path: Path) -> None:
    other = tiny_bundle(tmp_path / "other.vocalis", ["non_scream", "scream"],
                        {**TINY_FEATURES, "stats": ["mean", "std"]})
    with pytest.raises(ModelError, match=r"feature config .* must be the emotion model's"):
        StreamingPredictor(StreamConfig(), emotion_model=emotion_bundle, scream_model=scream_bundle,
                           keyword_spotter=False, backbone_scream_model=other)


def test_two_phase_api_matches_push_and_defers_emotion(scream_bundle: Bundle, emotion_bundle: Bundle) -> None:
    """advance() + batched scores + complete() is push(); an emotion left out is due on the next window."""
    x = harmonic(250, 4.0)
    ref = feed(make(scream_bundle, emotion_model=emotion_bundle, emotion_every=2, vad="energy"), x, 1600)
    p = make(scream_bundle, emotion_model=emotion_bundle, emotion_every=2, vad="energy")
    pending = [w for i in range(0, x.size, 1600) for w in p.advance(x[i : i + 1600])]
    assert [w.hop for w in pending] == list(range(len(ref))) and all(w.audio.size == 2 * SR for w in pending)
    screams = p.scream.score_batch([w.audio for w in pending])
    got = []
    for w, s in zip(pending, screams):
        got.append(p.complete(w, float(s), p.score_emotion(w) if p.emotion_due(w) else None))
    assert [(g.t_end, g.emotion_fresh) for g in got] == [(r.t_end, r.emotion_fresh) for r in ref]
    assert [g.scream for g in got] == pytest.approx([r.scream for r in ref], abs=1e-5)
    assert got[1].emotion_age_s == 0.5 and got[2].emotion_age_s == 0.0
    # shed the emotion of the due window at hop 2: it repeats hop 0's, says so, and hop 3 is due
    q = make(scream_bundle, emotion_model=emotion_bundle, emotion_every=2, vad="energy")
    ws = [w for i in range(0, x.size, 1600) for w in q.advance(x[i : i + 1600])]
    res = [q.complete(ws[0], 0.0, q.score_emotion(ws[0])), q.complete(ws[1], 0.0)]
    assert q.emotion_due(ws[2]) and not res[1].emotion_deferred
    res.append(q.complete(ws[2], 0.0))
    assert res[2].emotion_deferred and not res[2].emotion_fresh and res[2].emotion_age_s == 1.0
    assert res[2].probabilities == res[0].probabilities and q.emotion_due(ws[3])


class FakeSpotter:
    def __init__(self) -> None:
        self.calls = 0

    def spot(self, audio: np.ndarray) -> tuple[list[str], str]:
        self.calls += 1
        return ["help"], "help!"


def test_keyword_spotter_runs_only_on_loud_windows_rate_limited(scream_bundle: Bundle) -> None:
    spotter = FakeSpotter()
    p = make(scream_bundle, keyword_spotter=spotter, asr_voice_trigger=0.0, asr_level_db=-30.0, vad="energy")
    quiet = feed(p, noise(4.0, amp=0.001), 1600)
    assert spotter.calls == 0 and all(w.transcript is None for w in quiet)
    loud = feed(p, harmonic(300, 4.0, amp=0.7), 1600)
    hits = [w for w in loud if w.keywords]
    # 8 loud windows, but at most one ASR call per window length (2 s = 4 hops)
    assert 1 <= spotter.calls <= 3 and len(hits) == spotter.calls
    assert hits[0].keywords == ["help"] and hits[0].transcript == "help!"


def test_energy_vad_fallback_is_reported(scream_bundle: Bundle) -> None:
    res = feed(make(scream_bundle, vad="energy"), np.concatenate([noise(2.0, amp=1e-4), harmonic(200, 2.0)]), 1600)
    assert all(w.voice_model == "energy" for w in res)
    assert res[0].voice < 0.5 < res[-1].voice
    v = EnergyVAD()
    assert v(np.zeros(100, np.float32)).size == 0  # frames are completed across calls
    assert v(np.zeros(500, np.float32)).size == 1


@pytest.mark.skipif(silero_onnx_path() is None, reason="silero-vad is not installed (pip install --no-deps silero-vad)")
def test_silero_vad_is_used_when_installed(scream_bundle: Bundle) -> None:
    res = feed(make(scream_bundle), np.zeros(2 * SR, np.float32), 1000)
    assert res[0].voice_model == "silero" and 0.0 <= res[0].voice < 0.5
    from vocalis.audio.vad import SileroVAD

    a, b = SileroVAD(), SileroVAD()  # one onnxruntime session per process; the state is per instance
    assert a._sess is b._sess
    x = harmonic(200, 1.0, amp=0.5)
    first = a(x)
    a(x)
    assert np.array_equal(b(x), first)  # b starts from its own fresh state, whatever a went through


def test_silero_silence_gate_skips_only_long_quiet_stretches() -> None:
    from vocalis.audio.vad import FRAME, SileroVAD

    quiet = np.zeros(20 * FRAME, np.float32)
    voice = harmonic(200, 20 * FRAME / SR, amp=0.5)
    x = np.concatenate([voice, quiet, voice])
    gated, plain = SileroVAD(gate_dbfs=-60.0, gate_frames=8), SileroVAD(gate_dbfs=None)
    pieces = [x[i : i + 700] for i in range(0, x.size, 700)]  # pieces that cut frames: the run spans calls
    pg = np.concatenate([gated(p) for p in pieces])
    pp = np.concatenate([plain(p) for p in pieces])
    assert gated.frames_seen == plain.frames_seen == 60 and plain.frames_skipped == 0
    # the first 7 quiet frames still go through the model (its hangover); the other 13 are skipped
    assert gated.frames_skipped == 13
    assert np.array_equal(pg[:27], pp[:27]) and np.all(pg[27:40] == 0.0)
    assert (pg[40:] > 0.5).mean() == pytest.approx((pp[40:] > 0.5).mean(), abs=0.1)
    # a quiet but not silent stretch (-40 dBFS) is never skipped
    soft = SileroVAD(gate_dbfs=-60.0)
    soft(0.01 * np.ones(30 * FRAME, np.float32))
    assert soft.frames_skipped == 0
    soft.reset()
    assert soft.frames_seen == soft.frames_skipped == 0


@pytest.mark.parametrize("kw, match", [({"gate_dbfs": 3.0}, "gate_dbfs=3.0"), ({"gate_frames": 0}, "gate_frames=0")])
def test_silero_gate_config_errors(kw: dict, match: str) -> None:
    from vocalis.audio.vad import SileroVAD

    with pytest.raises(ConfigError, match=match):
        SileroVAD(**kw)


def test_silero_gate_agrees_with_the_ungated_model_on_real_speech() -> None:
    from tests.conftest import corpus_dir
    from vocalis.audio.io import load_audio
    from vocalis.audio.vad import SileroVAD
    from vocalis.corpora import load_corpus

    items = load_corpus(corpus_dir("ravdess")).items[::60] + load_corpus(corpus_dir("tess")).items[::120]
    x = np.concatenate([load_audio(it.path) for it in items])
    gated, plain = SileroVAD(gate_dbfs=-60.0), SileroVAD(gate_dbfs=None)
    pg = np.concatenate([gated(x[i : i + 4000]) for i in range(0, x.size, 4000)])
    pp = np.concatenate([plain(x[i : i + 4000]) for i in range(0, x.size, 4000)])
    assert gated.frames_skipped / gated.frames_seen > 0.15  # the corpora's pauses are digital silence
    assert np.mean((pg > 0.5) == (pp > 0.5)) >= 0.98


def test_silero_gate_quiet_runs_carry_across_calls_like_a_frame_by_frame_count() -> None:
    from vocalis.audio.vad import FRAME, SileroVAD

    rng = np.random.default_rng(0)
    vad = SileroVAD(gate_dbfs=-60.0, gate_frames=3)
    count = 0
    for _ in range(300):  # calls of 1-12 frames, 70 % of them silent
        quiet = rng.random(int(rng.integers(1, 13))) < 0.7
        frames = np.where(quiet[:, None], 0.0, 0.5).astype(np.float32) * np.ones((1, FRAME), np.float32)
        want = []
        for q in quiet:  # the rule, one frame at a time
            count = count + 1 if q else 0
            want.append(count >= 3)
        assert vad._skips(frames).tolist() == want


def test_silero_shed_takes_audio_without_the_model_and_scoring_resumes() -> None:
    from vocalis.audio.vad import FRAME, SileroVAD

    voice = harmonic(200, 20 * FRAME / SR, amp=0.5)
    vad = SileroVAD(gate_dbfs=None)
    first = vad(voice)
    h, c = vad._h.copy(), vad._c.copy()
    shed = vad.shed(voice[: 10 * FRAME + 100])  # 10 frames and a remainder
    assert shed.shape == (10,) and np.isnan(shed).all()
    assert np.array_equal(vad._h, h) and np.array_equal(vad._c, c)  # the model did not run
    assert vad.frames_seen == 30 and vad.frames_shed == 10
    again = vad(voice[10 * FRAME + 100 :])  # the remainder completes the next frame: framing is kept
    assert again.shape == (10,) and np.isfinite(again).all() and ((again >= 0) & (again <= 1)).all()
    assert first.max() > 0.5  # the model did hear the onset before
    vad.reset()
    assert vad.frames_shed == 0


def test_a_shed_vad_holds_the_voice_and_says_so(scream_bundle: Bundle) -> None:
    from vocalis.audio.vad import SileroVAD

    p = make(scream_bundle, vad="silero", asr="off", emotion_every=0)
    assert isinstance(p.vad, SileroVAD)
    x = np.concatenate([harmonic(200, 2.0, amp=0.5), noise(3.0, amp=0.05, seed=1)])

    def run(a: int, b: int, **kw: bool) -> list:
        return [w for i in range(a, b, 4000) for w in p.advance(x[i : min(i + 4000, b)], SR, **kw)]

    live = run(0, 2 * SR)
    assert len(live) == 1 and not live[0].voice_deferred and live[0].voice > 0.5
    shed = run(2 * SR, 4 * SR + SR // 2, vad=False)  # 2.5 s shed: windows ending at 2.5 ... 4.5 s
    assert [w.voice_deferred for w in shed] == [True] * 5
    # the window ending at 2.5 s holds frames 15..77; 15..61 were scored (the first 2 s): the voice is their max
    ref = SileroVAD()(x[: 2 * SR])
    assert ref.size == 62 and shed[0].voice == pytest.approx(float(ref[15:].max()), abs=1e-6)
    assert shed[-1].voice == shed[-2].voice  # no scored frame left in the window: the last voice held
    back = run(4 * SR + SR // 2, x.size)
    assert [w.voice_deferred for w in back] == [True]  # shed frames are still inside the window
    r = p.complete(back[-1], 0.0, None)
    assert r.voice_deferred and 0.0 <= r.voice <= 1.0
    p.reset()
    assert not run(0, 2 * SR)[0].voice_deferred
    q = make(scream_bundle, vad="silero", asr="off", emotion_every=0)
    only = [w for i in range(0, 2 * SR, 4000) for w in q.advance(x[i : i + 4000], SR, vad=False)]
    assert only[0].voice_deferred and only[0].voice == 0.0  # nothing ever scored: the initial 0


def test_a_windows_voice_comes_only_from_vad_frames_that_overlap_it() -> None:
    """VAD frames lie on a 512-sample grid from the stream's start; a 2 s window is 62.5 frames, so on
    half the grid offsets the last 63 frames reach one that ends before the window starts."""
    from vocalis.audio.vad import FRAME

    cfg = StreamConfig(vad="energy", asr="off")
    p = StreamingPredictor(cfg, emotion_model=False, keyword_spotter=False)
    w, h = cfg.window_samples, cfg.hop_samples
    # a window end where only 62 frames overlap the window (the 63rd from the end lies before it)
    end = next(e for e in range(w + 2 * h, 20 * h, h) if e // FRAME - (e - w) // FRAME == 62)
    start = end - w
    first_whole_before = (start // FRAME - 1) * FRAME  # a frame that ends before the window starts
    x = (np.random.default_rng(0).standard_normal(end + h) * 1e-3).astype(np.float32)
    x[first_whole_before + 50:first_whole_before + FRAME - 50] = 0.5  # a burst in that frame only
    by_start = {round(r.t_start * SR): r for r in p.push(x, SR)}
    assert by_start[start].level_db < -50 and by_start[start].voice < 0.5  # the burst is not this window's
    assert by_start[start - h].voice > 0.5  # the window that holds it hears it


def test_unsigned_pcm_is_centred_on_its_midpoint() -> None:
    cfg = StreamConfig(vad="energy", asr="off")
    silence_u8 = np.full(3 * SR, 128, np.uint8)  # uint8 PCM silence
    tone = (np.sin(np.arange(3 * SR) * 2 * np.pi * 440 / SR) * 0.5).astype(np.float32)
    as_u16 = np.round(tone * 32768 + 32768).astype(np.uint16)
    quiet = StreamingPredictor(cfg, emotion_model=False, keyword_spotter=False).push(silence_u8, SR)
    loud = StreamingPredictor(cfg, emotion_model=False, keyword_spotter=False).push(as_u16, SR)
    ref = StreamingPredictor(cfg, emotion_model=False, keyword_spotter=False).push(tone, SR)
    assert quiet and all(r.level_db < -90 for r in quiet)  # was a constant 0.5: -6 dB
    assert [round(r.level_db, 1) for r in loud] == [round(r.level_db, 1) for r in ref]
