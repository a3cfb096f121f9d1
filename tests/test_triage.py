"""Emergency-call triage: lexicon, priority, caller states, report, and whole calls built from
synthetic speech (espeak-ng) and the shared corpora (noise, telephone band)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfiltfilt
from typer.testing import CliRunner

from tests.conftest import SR, corpus_dir, make_synthetic_corpus, noise
from tests.speech import say
from vocalis.cli import app
from vocalis.errors import ConfigError
from vocalis.triage import (
    CallAnalyzer,
    CallerStateModel,
    GravityLexicon,
    PriorityConfig,
    Signal,
    Term,
    TriageConfig,
    build_report,
    find_calls,
    render_html,
    write_report,
)
from vocalis.triage.lexicon import GravityHit, gravity_score
from vocalis.triage.priority import WindowAffect, level, score, sustained_run

# --- gravity lexicon --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("He is not breathing", [("not breathing", False)]),
    ("there is no fire", [("fire", True)]),
    ("No, there's a fire in the kitchen!", [("fire", False)]),  # the comma ends the negation's clause
    ("nobody is hurt but he is bleeding", [("hurt", True), ("bleeding", False)]),
    ("I can't breathe", [("can't breathe", False)]),
    ("he doesn't have a gun", [("gun", True)]),
    ("there is no one injured", [("injured", True)]),  # two-word negator
    ("my daughter had a seizure and she is unresponsive", [("seizure", False), ("unresponsive", False)]),
    ("I would like to report a broken street light", []),
    # an unpunctuated transcript: the "not" of a hit negates nothing after it
    ("my husband is not breathing he collapsed", [("not breathing", False), ("collapsed", False)]),
    ("there is no fire no smoke", [("fire", True), ("smoke", True)]),
])
def test_lexicon_finds_grave_terms_and_their_negation(text: str, expected: list[tuple[str, bool]]) -> None:
    hits = GravityLexicon().find_text(text)
    assert [(h.phrase, h.negated) for h in hits] == expected
    assert all(h.weight == 0.0 for h in hits if h.negated)


def test_lexicon_prefers_the_longest_phrase_and_scores_noisy_or() -> None:
    lex = GravityLexicon((Term("heart", 0.2), Term("heart attack", 0.9), Term("smoke", 0.5)))
    hits = lex.find_text("I think it's a heart attack, there's smoke")
    assert [h.phrase for h in hits] == ["heart attack", "smoke"]
    assert gravity_score(hits) == pytest.approx(1 - 0.1 * 0.5)
    assert gravity_score([]) == 0.0


def test_lexicon_from_file_extends_or_replaces(tmp_path: Path) -> None:
    f = tmp_path / "lex.json"
    f.write_text(json.dumps({"terms": [{"phrase": "gas leak", "weight": 0.8, "category": "hazard"}], "extend": True}))
    lex = GravityLexicon.from_file(f)
    assert [h.phrase for h in lex.find_text("a gas leak and a fire")] == ["gas leak", "fire"]
    f.write_text(json.dumps({"terms": [{"phrase": "gas leak", "weight": 0.8}]}))
    assert [h.phrase for h in GravityLexicon.from_file(f).find_text("a gas leak and a fire")] == ["gas leak"]


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not a readable JSON"),
    ('{"terms": "fire"}', "'terms' list"),
    ('{"terms": [{"phrase": "fire", "weight": 2}]}', "weight=2.0 must be in [0, 1]"),
    ('{"terms": [{"phrase": "fire", "weight": "high"}]}', "weight='high'"),
    ('{"terms": [{"phrase": "!!"}]}', "at least one word"),
    ('{"terms": [{"phrase": "fire"}], "negators": "no"}', "negators='no'"),
])
def test_lexicon_bad_files_name_the_value(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "lex.json"
    f.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        GravityLexicon.from_file(f)
    with pytest.raises(ConfigError, match="not found"):
        GravityLexicon.from_file(tmp_path / "missing.json")


# --- priority ---------------------------------------------------------------------------------


def _hit(phrase: str, w: float, t: float = 1.0, negated: bool = False) -> GravityHit:
    return GravityHit(phrase, "medical", 0.0 if negated else w, negated, t, t + 0.5, phrase)


def _windows(distress: list[float | None], top: str = "fear") -> list[WindowAffect]:
    return [WindowAffect(3.0 * i, 3.0 * (i + 1), d, top if d is not None else None, d or 0.0)
            for i, d in enumerate(distress)]


def test_priority_grows_with_gravity_and_distress_and_explains_itself() -> None:
    calm = _windows([0.1, 0.2, 0.1])
    scared = _windows([0.3, 0.85, 0.8, 0.2])
    p_none, _ = score([], calm, [])
    p_affect, r_affect = score([], scared, [])
    p_word, r_word = score([_hit("not breathing", 1.0, 12.0)], calm, [])
    p_both, r_both = score([_hit("not breathing", 1.0, 12.0)], scared, [])
    assert p_none < p_affect < p_both and p_none < p_word < p_both
    assert level(p_both) == "P1" and level(p_none) == "P4"
    calm_voice = _windows([0.1, 0.1])
    assert level(score([_hit("not breathing", 1.0)], calm_voice, [])[0]) == "P1"  # grave words said calmly
    assert level(score([], _windows([1.0, 1.0]), [])[0]) == "P2"  # screaming, no intelligible word
    assert r_word[0].text == "keyword 'not breathing' at 00:12 [medical]"
    assert any(r.text == "fear 0.82 for 6 s (00:03-00:09)" for r in r_both)
    assert r_affect[0].kind == "affect"


def test_negated_words_and_signals_only_discount_within_bounds() -> None:
    w = _windows([0.2, 0.2])
    p_neg, reasons = score([_hit("fire", 0.8, negated=True)], w, [])
    assert p_neg == score([], w, [])[0]
    assert reasons[-1].text.startswith("negated: 'fire'")
    grave = [_hit("not breathing", 1.0)]
    p, _ = score(grave, w, [])
    many = [Signal("laughter", "x", 0.2), Signal("pocket_call", "y", 0.3), Signal("very_short_call", "z", 0.1)]
    p_sig, reasons = score(grave, w, many, PriorityConfig(max_discount=0.5))
    assert p_sig == pytest.approx(p * 0.5, abs=0.06)  # three signals, but never more than max_discount
    assert {r.kind for r in reasons} >= {"keyword", "signal"}
    with pytest.raises(ConfigError, match=r"max_discount=1\.5"):
        PriorityConfig(max_discount=1.5)


def test_sustained_run_is_the_longest_stretch_above_threshold() -> None:
    run = sustained_run(_windows([0.9, None, 0.6, 0.7, 0.8, 0.1]), 0.5)
    assert run is not None and run[:2] == (6.0, 15.0) and run[3] == "fear"
    assert sustained_run(_windows([0.1, 0.2]), 0.5) is None


# --- caller states ----------------------------------------------------------------------------


def test_caller_states_from_emotions_and_from_a_custom_model() -> None:
    emo = SimpleNamespace(labels=["neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"])
    m = CallerStateModel(emo)  # type: ignore[arg-type]
    st = m.states(np.array([0.05, 0.05, 0.1, 0.2, 0.1, 0.4, 0.05, 0.05]))
    assert m.mode == "emotion" and st.distress == pytest.approx(0.2 + 0.4 + 0.5 * 0.1)  # anger counts half
    assert st.states == pytest.approx({"distress": 0.7, "calm": 0.1, "cheerful": 0.15, "other": 0.05})
    custom = SimpleNamespace(labels=["calm", "drunk", "painful", "prank"])
    c = CallerStateModel(custom)  # type: ignore[arg-type]
    st = c.states(np.array([0.1, 0.2, 0.6, 0.1]))
    assert c.mode == "custom" and c.urgent == ("painful",) and st.distress == pytest.approx(0.6)
    assert c.non_genuine(st.states) == pytest.approx(0.1)
    assert CallerStateModel(custom, urgent_states=["drunk", "painful"]).urgent == ("drunk", "painful")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="urgent_states=\\['angry'\\]"):
        CallerStateModel(custom, urgent_states=["angry"])  # type: ignore[arg-type]


# --- report -----------------------------------------------------------------------------------


def _call(cid: str, priority: float) -> dict[str, Any]:
    return {"call_id": cid, "priority": priority, "level": level(priority), "duration_s": 30.0, "speech_s": 20.0,
            "gravity": 0.5, "affect": 0.5, "reasons": [{"text": f"why {cid}", "contribution": 10.0, "kind": "keyword"}],
            "signals": [], "keywords": [{"phrase": "fire", "start": 3.0, "end": 3.4, "negated": False}],
            "timeline": [{"start": 0.0, "end": 3.0, "speech": 1.0, "distress": 0.6,
                          "states": {"distress": 0.6, "calm": 0.4}}],
            "transcript": {"text": "fire", "segments": [{"words": [{"text": "fire", "start": 3.0, "end": 3.4,
                                                                     "probability": 0.9}]}]}}


def test_report_is_a_queue_by_priority_then_arrival_and_html_is_escaped(tmp_path: Path) -> None:
    calls = [_call("first", 40.0), _call("<script>x</script>", 90.0), _call("third", 40.0), _call("low", 5.0)]
    rep = build_report(calls, errors=[{"file": "bad.wav", "error": "cannot decode"}])
    assert [c["call_id"] for c in rep["calls"]] == ["<script>x</script>", "first", "third", "low"]
    assert [c["rank"] for c in rep["calls"]] == [1, 2, 3, 4]
    js, ht = write_report(rep, tmp_path / "out")
    assert json.loads(js.read_text())["calls"][0]["priority"] == 90.0
    page = ht.read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert page.index("first") < page.index("third") and "<svg" in page and "bad.wav" in page
    assert '<mark class="grave"' in render_html(rep)


# --- whole calls (models + synthetic speech + corpora) ----------------------------------------


def _telephone(x: np.ndarray) -> np.ndarray:
    sos = butter(4, [300, 3400], btype="band", fs=SR, output="sos")
    return sosfiltfilt(sos, x).astype(np.float32)


def _clips(label: str, n: int, actor_min: int = 1) -> list[np.ndarray]:
    import csv

    from vocalis.audio.io import load_audio

    root = corpus_dir("ravdess")
    with open(root / "manifest.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] in (label, "fearful" if label == "fear" else label)]
    return [load_audio(root / r["path"]) for r in rows[actor_min * 7: actor_min * 7 + n]]


def _join(*parts: np.ndarray, gap: float = 0.4) -> np.ndarray:
    g = np.zeros(int(gap * SR), np.float32)
    out = [g]
    for p in parts:
        out += [p.astype(np.float32), g]
    return np.concatenate(out)


@pytest.fixture(scope="module")
def analyzer() -> CallAnalyzer:
    return CallAnalyzer()


@pytest.mark.corpus
def test_urgent_call_outranks_a_routine_one_even_through_a_telephone_line(analyzer: CallAnalyzer, tmp_path: Path) -> None:
    urgent = _join(say("Please help, my husband is not breathing, he collapsed on the floor", tmp_path, "u"),
                   *_clips("fear", 3))
    urgent = urgent + noise(urgent.size / SR, amp=0.003, seed=1)  # ~ 30 dB SNR room noise
    routine = _join(say("Hello, I want to report a broken street light. There is no fire and nobody is hurt.",
                        tmp_path, "r"), *_clips("neutral", 3))
    rep_u = analyzer.analyse(_telephone(urgent), call_id="urgent")
    rep_r = analyzer.analyse(_telephone(routine), call_id="routine")
    assert rep_u.priority > rep_r.priority + 20
    assert rep_u.level in ("P1", "P2")
    phrases = {h.phrase for h in rep_u.hits if not h.negated}
    assert {"not breathing", "collapsed"} <= phrases
    assert any("not breathing" in r.text for r in rep_u.reasons)
    assert {h.phrase for h in rep_r.hits if h.negated} >= {"fire"}
    w = rep_u.transcript.words
    assert w and all(0 <= a.start <= a.end <= rep_u.duration_s + 0.05 for a in w)
    assert all(0.0 <= a.probability <= 1.0 for a in w)
    voiced = [row for row in rep_u.timeline if "states" in row]
    assert voiced and all(abs(sum(row["states"].values()) - 1) < 1e-2 for row in voiced)


def test_transcript_times_are_call_times_after_skipping_silence(analyzer: CallAnalyzer, tmp_path: Path) -> None:
    speech = say("There is a fire in the building", tmp_path)
    call = np.concatenate([np.zeros(6 * SR, np.float32), speech, np.zeros(3 * SR, np.float32)])
    rep = analyzer.analyse(call, call_id="late")
    fire = [h for h in rep.hits if h.phrase == "fire"]
    assert fire and 6.0 <= fire[0].start <= 6.0 + speech.size / SR  # not ~0.5 s: times are mapped back
    assert rep.speech_s < rep.duration_s - 5
    assert rep.timeline[0]["speech"] == 0.0 and rep.timeline[1]["speech"] < 0.3  # padding only
    assert "states" not in rep.timeline[0] and "states" not in rep.timeline[1]  # no caller state without speech


def test_silent_pocket_short_and_laughing_calls_raise_signals(analyzer: CallAnalyzer, tmp_path: Path) -> None:
    silent = analyzer.analyse(np.zeros(20 * SR, np.float32) + noise(20, amp=0.0005), call_id="silent")
    rng = np.random.default_rng(0)
    rustle = np.cumsum(rng.standard_normal(20 * SR)).astype(np.float32)
    rustle = (0.05 * (rustle - np.convolve(rustle, np.ones(400) / 400, "same")) / 20).astype(np.float32)  # brown-ish
    pocket = analyzer.analyse(rustle, call_id="pocket")
    laugh = analyzer.analyse(say("Ha ha ha! There is a fire at the school! Ha ha ha.", tmp_path), call_id="laugh")
    assert [s.name for s in silent.signals] == ["silent_call"] and silent.level == "P4"
    assert "pocket_call" in [s.name for s in pocket.signals]
    assert {"laughter", "very_short_call"} & {s.name for s in laugh.signals} >= {"laughter"}
    assert any(r.kind == "signal" and r.contribution < 0 for r in laugh.reasons)


def test_cli_triage_writes_a_sorted_report_and_reports_bad_files(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    sf.write(calls / "a_routine.wav", say("I would like to ask about my parking ticket", tmp_path, "a"), SR)
    sf.write(calls / "b_urgent.wav", say("Help! Someone has been stabbed, he is bleeding a lot", tmp_path, "b"), SR)
    (calls / "c_broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["triage", str(calls), "--out", str(out), "--json", "-j", "1", "-q"])
    assert res.exit_code == 1, res.output  # one file failed, the others are in the report
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [c["call_id"] for c in lines] == ["b_urgent", "a_routine"] and lines[0]["rank"] == 1
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_calls"] == 2 and rep["errors"][0]["file"].endswith("c_broken.wav")
    assert rep["calls"][0]["transcript"]["text"] and rep["calls"][0]["timeline"]
    assert "stabbed" in (out / "report.html").read_text()
    assert "Traceback" not in res.output


def test_find_calls_skips_hidden_files_and_takes_every_audio_format(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.aiff", np.zeros(1600, np.float32), SR, format="AIFF")
    sf.write(tmp_path / ".partial.wav", np.zeros(1600, np.float32), SR)
    (tmp_path / "notes.txt").write_text("not audio")
    assert [f.name for f in find_calls([tmp_path])] == ["a.aiff"]  # like `vocalis batch`


def test_cli_triage_rejects_missing_inputs_and_bad_lexicons(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["triage", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "does not exist" in str(res.exception or res.output)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="hold no audio files"):
        find_calls([tmp_path / "empty"])


def test_custom_caller_state_model_trained_on_a_manifest(tmp_path: Path) -> None:
    root = make_synthetic_corpus(tmp_path / "corpus", n_speakers=4, per_class=3)
    manifest = root / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",angry,", ",drunk,").replace(",fear,", ",painful,"))
    model = tmp_path / "callers.vocalis"
    res = CliRunner().invoke(app, ["train", str(root), "--out", str(model), "--recipe", "classic-logreg",
                                   "--cv", "2", "--quiet", "--no-cache"])
    assert res.exit_code == 0, res.output
    a = CallAnalyzer(model, asr_model=None, config=TriageConfig(min_speech=0.0))  # tones are not speech to VAD
    assert a.caller.mode == "custom" and a.caller.urgent == ("painful",)
    from tests.conftest import harmonic

    call = np.concatenate([harmonic(110 * 2.2, 3.0, amp=0.25, vibrato=0.08) for _ in range(3)])
    rep = a.analyse(call, call_id="custom")
    voiced = [row for row in rep.timeline if "states" in row]
    assert voiced and set(voiced[0]["states"]) == {"calm", "drunk", "painful"}
    assert rep.to_dict()["caller_model"]["mode"] == "custom" and rep.transcript.text == ""


@pytest.mark.corpus
def test_screamed_calls_for_help_drive_urgency_through_the_scream_detector(analyzer: CallAnalyzer) -> None:
    import csv

    from vocalis.audio.io import load_audio

    root = corpus_dir("screams")
    with open(root / "manifest.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["subset"] == "scream_call" and r["emotion"] == "fearful"][:4]
    call = _join(*[load_audio(root / r["path"]) for r in rows], gap=0.5)
    rep = analyzer.analyse(call, call_id="scream")
    voiced = [row for row in rep.timeline if "states" in row]
    assert voiced and all(row["urgency"] == max(row["distress"], row["scream"]) for row in voiced)
    assert max(row["scream"] for row in voiced) > 0.5
    assert any(r.kind == "affect" and r.text.startswith("screaming") for r in rep.reasons)
    plain = CallAnalyzer(analyzer.bundle, asr_model=None, scream_model=False).analyse(call)
    assert all("scream" not in row for row in plain.timeline) and rep.affect >= plain.affect


@pytest.mark.corpus
def test_screams_without_words_make_an_urgent_call_not_a_pocket_call(analyzer: CallAnalyzer) -> None:
    """Screams are not speech to the VAD: the scream detector still scores those windows."""
    import csv

    from vocalis.audio.io import load_audio

    root = corpus_dir("screams")
    with open(root / "manifest.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["subset"] == "scream_call" and r["keyword"] == "bacho"
                and r["emotion"] == "fearful"][:5]
    call = np.concatenate([load_audio(root / r["path"]) for r in rows])
    rep = CallAnalyzer(analyzer.bundle, asr_model=None).analyse(call, call_id="screams")
    assert rep.speech_s < 0.2 * rep.duration_s  # the VAD hears (almost) no speech in it
    wordless = [row for row in rep.timeline if "states" not in row]
    assert wordless and all(row["scream"] >= 0.5 and row["urgency"] == row["scream"] for row in wordless)
    assert rep.level in ("P1", "P2") and "pocket_call" not in {s.name for s in rep.signals}
    assert any(r.kind == "affect" and r.text.startswith("screaming") for r in rep.reasons)
    without = CallAnalyzer(analyzer.bundle, asr_model=None, scream_model=False).analyse(call)
    assert without.level == "P4"  # what the call was before: the voice alone does not see it


def test_onnx_encoder_transcribes_like_ctranslate2(tmp_path: Path) -> None:
    """The onnxruntime encoder under faster-whisper's decoder: same words, its own cached model."""
    from vocalis.danger.keywords import load_asr
    from vocalis.triage.transcript import Transcriber

    speech = say("There is a fire in the building and my neighbour is hurt", tmp_path)
    words: dict[str, set[str]] = {}
    for enc in ("onnx", "ctranslate2"):
        tr = Transcriber(encoder=enc).transcribe(speech)
        words[enc] = set(tr.text.lower().replace(".", " ").replace(",", " ").split())
        assert {"fire", "building"} <= words[enc], tr.text
        assert tr.words and all(0.0 <= w.start <= w.end <= speech.size / SR + 0.05 for w in tr.words)
    both = words["onnx"] & words["ctranslate2"]
    assert len(both) >= 0.7 * max(len(words["onnx"]), len(words["ctranslate2"])), words
    onnx_m, ct2_m = load_asr(encoder="onnx"), load_asr(encoder="ctranslate2")
    assert onnx_m is not ct2_m and load_asr(encoder="onnx") is onnx_m
    mel = np.zeros((80, 3000), np.float32)
    out = np.asarray(onnx_m.encode(mel))
    ref = np.asarray(ct2_m.encode(mel))
    assert out.shape == ref.shape == (1, 1500, 384)
    cos = float((out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref))
    assert cos > 0.95  # int8 weights: close to CTranslate2's encoder, not identical
    with pytest.raises(ConfigError, match="encoder='tpu'"):
        Transcriber(encoder="tpu")
    with pytest.raises(ConfigError, match="encoder='tpu'"):
        load_asr(encoder="tpu")


def test_onnx_encoder_falls_back_to_ctranslate2_when_the_graph_cannot_be_built(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from vocalis.danger import keywords

    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError("unknown layout")

    monkeypatch.setattr(keywords, "_use_onnx_encoder", broken)
    monkeypatch.setattr(keywords, "_asr_models", {})
    with caplog.at_level("WARNING", logger="vocalis.asr"):
        m = keywords.load_asr(encoder="onnx")
    assert "ONNX encoder unavailable (unknown layout)" in caplog.text
    assert "encode" not in vars(m)  # faster-whisper's own method, not an instance override


@pytest.mark.corpus
def test_a_short_last_window_needs_as_much_speech_as_a_whole_one(analyzer: CallAnalyzer) -> None:
    """A 4.1 s clip: its last window (3.0-4.1 s) holds the end of a word and silence; the emotion
    model on that scrap is not evidence of distress (it said fear 1.00 and made the call P3)."""
    from vocalis.audio.io import load_audio

    root = corpus_dir("ravdess")
    clip = next(root.rglob("03-01-05-02-01-01-01.*"))  # actor 1, angry, strong intensity
    x = load_audio(clip)
    a = CallAnalyzer(analyzer.bundle, asr_model=None)
    rep = a.analyse(x, call_id="tail")
    first, last = rep.timeline
    assert last["end"] - last["start"] < 1.5 and 0 < last["speech"] * (last["end"] - last["start"]) < 0.9
    assert "states" in first and "states" not in last
    cfg = TriageConfig(min_speech=0.1)  # the rule is in seconds of speech: a lower bar scores it again
    assert "states" in CallAnalyzer(analyzer.bundle, asr_model=None, config=cfg).analyse(x).timeline[-1]
