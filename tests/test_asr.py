"""The onnxruntime Whisper decoder (vocalis.asr.decoder) against CTranslate2's, and its rules on synthetic logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.speech import say
from vocalis.asr.decoder import (
    HybridWhisper,
    OnnxWhisperDecoder,
    SpecialTokens,
    _looping,
    _timestamp_rules,
    align_trace,
    median_filter,
    negative_dtw,
    special_tokens,
)
from vocalis.errors import ConfigError

SP = SpecialTokens(eot=10, sot=11, no_timestamps=12, timestamp_begin=13, no_speech=None, suppress_begin=(),
                   suppress=())
VOCAB = 30  # text tokens 0-9, eot 10, specials 11-12, timestamps 13-29


def _rules(seq: list[int], logits: np.ndarray | None = None, max_initial: int | None = None) -> np.ndarray:
    if logits is None:  # text and the end token likelier than any one timestamp (and all of them together)
        logits = np.zeros(VOCAB, np.float32)
        logits[: SP.eot + 1] = 5.0
    row = logits.astype(np.float32)
    _timestamp_rules(row, seq, SP, max_initial)
    return np.isfinite(row)


def test_timestamp_rules_on_synthetic_logits() -> None:
    ts = SP.timestamp_begin
    first = _rules([], max_initial=3)  # the first token is a timestamp no later than the 4th
    assert not first[:ts].any() and first[ts:ts + 4].all() and not first[ts + 4:].any()
    start = _rules([ts + 2])  # a segment's opening timestamp: text (or the end) next
    assert start[:SP.eot + 1].all() and not start[ts:].any()
    text = _rules([ts + 2, 5])  # inside a segment: text, or a closing timestamp not before the opening one
    assert text[:SP.eot + 1].all() and not text[ts:ts + 2].any() and text[ts + 2:].all()
    closing = _rules([ts + 2, 5, ts + 4])  # a closing timestamp: the next opening one (not earlier) or the end
    assert not closing[:SP.eot].any() and closing[SP.eot]
    assert not closing[ts:ts + 4].any() and closing[ts + 4:].all()
    pair = _rules([ts + 2, 5, ts + 4, ts + 4])  # a pair just closed: text or the end, no timestamp
    assert pair[:SP.eot + 1].all() and not pair[ts:].any()
    assert not _rules([ts + 2, 5])[SP.no_timestamps]
    # timestamps win when their summed probability beats every single text token
    peaked = np.zeros(VOCAB, np.float32)
    peaked[ts + 5:] = 1.0
    assert not _rules([ts + 2, 5], peaked)[:ts].any()
    spread = np.zeros(VOCAB, np.float32)
    spread[3] = 5.0
    assert _rules([ts + 2, 5], spread)[3]


@pytest.fixture(scope="module")
def float32_whisper() -> Any:
    from faster_whisper import WhisperModel

    from vocalis.features.whisper import resolve_model_path

    path = resolve_model_path("tiny.en")
    return path, WhisperModel(str(path), device="cpu", compute_type="float32", cpu_threads=1)


def test_float32_decoder_reproduces_ctranslate2_greedy_decoding(float32_whisper: Any, tmp_path: Path) -> None:
    """Same weights in float32 on both runtimes: the same tokens, scores and no-speech probability."""
    path, fw = float32_whisper
    speech = say("Please come quickly, my father is not breathing. He collapsed in the kitchen.", tmp_path)
    mel = fw.feature_extractor(np.pad(speech, (0, 30 * 16000 - speech.size)))[:, :3000]
    enc = fw.encode(mel)
    dec = OnnxWhisperDecoder(path, quantized=False)
    sp = dec.tokens
    assert (sp.eot, sp.sot, sp.no_timestamps) == (50256, 50257, 50362) and sp.no_speech is not None
    kw: dict[str, Any] = dict(return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                              suppress_tokens=[-1], max_initial_timestamp_index=50, beam_size=1)
    sot_prev = fw.hf_tokenizer.token_to_id("<|startofprev|>")
    previous = [sot_prev, *range(1000, 1030), sp.sot]  # <|startofprev|> + earlier text + <|startoftranscript|>
    for prompt, max_length in (([sp.sot], 448), ([sp.sot, sp.no_timestamps], 448), ([sp.sot], 25),
                               (previous, 448), (previous, 60)):
        ref = fw.model.generate(enc, [prompt], max_length=max_length, **kw)[0]
        got = dec.generate(np.asarray(enc)[0], prompt, max_length=max_length, suppress_tokens=[-1])
        assert got.sequences_ids == ref.sequences_ids, (prompt, max_length)
        assert got.scores[0] == pytest.approx(ref.scores[0], abs=1e-3)
        assert got.no_speech_prob == pytest.approx(ref.no_speech_prob, abs=1e-3)
        if max_length == 25:  # CTranslate2 stops at max_length // 2 new tokens
            assert len(ref.sequences_ids[0]) == 25 // 2
    timed = fw.model.generate(enc, [[sp.sot]], max_length=448, **kw)[0].sequences_ids[0]
    assert timed[0] >= sp.timestamp_begin and any(t < sp.eot for t in timed)  # timestamps and words
    text = fw.hf_tokenizer.decode([t for t in timed if t < sp.eot]).lower()
    assert "breathing" in text


def test_hybrid_model_hands_beam_search_to_ctranslate2() -> None:
    from vocalis.features.whisper import resolve_model_path

    calls: list[str] = []

    class Fake:
        def generate(self, *a: Any, **k: Any) -> list[str]:
            calls.append("ct2")
            return ["ct2"]

        is_multilingual = False

    class FakeDecoder:
        def generate_batch(self, enc: np.ndarray, prompts: list[list[int]], **k: Any) -> tuple[list[str], list[None]]:
            calls.append(f"onnx{enc.shape}")
            return ["onnx"] * len(prompts), [None] * len(prompts)

    h = HybridWhisper(Fake(), FakeDecoder())  # type: ignore[arg-type]
    enc = np.zeros((1, 4, 8), np.float32)
    assert h.generate(enc, [[1]], beam_size=1, max_length=448) == ["onnx"]
    assert h.generate(enc, [[1]], beam_size=5) == ["ct2"]
    assert h.generate(enc, [[1]], beam_size=1, sampling_topk=0, sampling_temperature=0.4) == ["ct2"]
    assert h.generate(enc, [[1]], repetition_penalty=1.2) == ["ct2"]
    assert h.generate(enc, [[1]], sampling_topk=1, sampling_temperature=0.0) == ["onnx"]  # top-1: greedy
    assert calls == ["onnx(1, 4, 8)", "ct2", "ct2", "ct2", "onnx(1, 4, 8)"]
    assert h.is_multilingual is False  # everything else is the CTranslate2 model's
    assert special_tokens(resolve_model_path("tiny.en")).timestamp_begin == 50363


def test_onnx_decoder_transcribes_and_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from vocalis.danger import keywords
    from vocalis.triage.transcript import Transcriber

    speech = say("There is a fire in the building and my neighbour is hurt", tmp_path)
    tr = Transcriber(decoder="onnx").transcribe(speech)
    assert {"fire", "building"} <= set(tr.text.lower().replace(",", " ").replace(".", " ").split()), tr.text
    assert tr.words and all(0.0 <= w.start <= w.end <= speech.size / 16000 + 0.05 for w in tr.words)
    assert all(0.0 <= w.probability <= 1.0 for w in tr.words)
    m = keywords.load_asr(encoder="onnx", decoder="onnx")
    assert isinstance(m.model, HybridWhisper) and keywords.load_asr(encoder="onnx", decoder="onnx") is m
    assert not isinstance(keywords.load_asr(encoder="onnx", decoder="ctranslate2").model, HybridWhisper)
    with pytest.raises(ConfigError, match="decoder='gpu'"):
        Transcriber(decoder="gpu")
    with pytest.raises(ConfigError, match="decoder='gpu'"):
        keywords.load_asr(decoder="gpu")

    import vocalis.asr.decoder as decoder_mod

    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError("unknown layout")

    monkeypatch.setattr(decoder_mod, "OnnxWhisperDecoder", broken)
    monkeypatch.setattr(keywords, "_asr_models", {})
    with caplog.at_level("WARNING", logger="vocalis.asr"):
        fallback = keywords.load_asr(decoder="onnx")
    assert "ONNX decoder unavailable (unknown layout)" in caplog.text
    assert not isinstance(fallback.model, HybridWhisper)


def test_keyword_spotter_hears_a_call_for_help_on_its_runtime(tmp_path: Path) -> None:
    from vocalis.danger.keywords import SPOTTER_RUNTIME, AsrKeywordSpotter

    spotter = AsrKeywordSpotter()
    assert spotter.runtime == SPOTTER_RUNTIME == {"encoder": "onnx", "decoder": "onnx"}
    hits, text = spotter.spot(say("Help! Somebody help me!", tmp_path, "help"))
    assert hits == ["help"], text
    assert isinstance(spotter._model.model, HybridWhisper)
    calm, text = spotter.spot(say("The weather is lovely this afternoon.", tmp_path, "calm"))
    assert calm == [], text
    with pytest.raises(ConfigError, match="decoder='cuda'"):
        AsrKeywordSpotter(decoder="cuda")


def test_batched_decoding_and_word_timing_reproduce_ctranslate2(float32_whisper: Any, tmp_path: Path) -> None:
    """Float32: windows decoded together give each window's lone tokens, and word timing read from
    the decoding pass gives CTranslate2's teacher-forced ``align`` path and token probabilities."""
    import ctranslate2

    path, fw = float32_whisper
    dec = OnnxWhisperDecoder(path, quantized=False)
    sp = dec.tokens
    clips = [say("Please come quickly, my father is not breathing.", tmp_path, "a"),
             say("There is a fire in our building and people are trapped upstairs.", tmp_path, "b"),
             say("Help.", tmp_path, "c")]
    enc = np.stack([np.asarray(fw.encode(fw.feature_extractor(np.pad(c, (0, 30 * 16000 - c.size)))[:, :3000]))[0]
                    for c in clips])
    prompt = [sp.sot, sp.no_timestamps]
    results, traces = dec.generate_batch(enc, [prompt] * 3, trace=True)
    for i, clip in enumerate(clips):
        alone = fw.model.generate(ctranslate2.StorageView.from_array(enc[i:i + 1]), [prompt], beam_size=1,
                                  suppress_tokens=[-1])[0]
        assert results[i].sequences_ids == alone.sequences_ids
        assert dec.generate(enc[i], prompt).sequences_ids == alone.sequences_ids
        text = results[i].sequences_ids[0]
        trace = traces[i]
        assert trace is not None and trace.tokens == tuple(text) and trace.qk.shape[1] == len(prompt) + len(text) + 1
        frames = int(np.ceil(clip.size / 16000)) * 100
        ref = fw.model.align(ctranslate2.StorageView.from_array(enc[i:i + 1]), [sp.sot], [text], [frames],
                             median_filter_width=7)[0]
        got = align_trace(trace, frames, 7)
        assert [tuple(p) for p in ref.alignments] == got.alignments
        assert got.text_token_probs == pytest.approx(list(ref.text_token_probs), abs=1e-3)
    # with timestamps there is no trace (the decoding context differs from the alignment's)
    assert dec.generate_batch(enc[:1], [[sp.sot]], trace=True)[1] == [None]


def test_hybrid_align_answers_from_traces_and_falls_back() -> None:
    from vocalis.asr.decoder import AlignmentResult, _Trace

    class Fake:
        def align(self, *a: Any, **k: Any) -> list[str]:
            return ["ct2"]

    class FakeDecoder:
        tokens = SP

    h = HybridWhisper(Fake(), FakeDecoder())  # type: ignore[arg-type]
    enc = np.random.default_rng(0).standard_normal((1, 6, 4)).astype(np.float32)
    qk = np.random.default_rng(1).standard_normal((2, 6, 6)).astype(np.float32)  # prompt 2 + 3 tokens + end
    h._local.traces = [_Trace(enc[0], (SP.sot, SP.no_timestamps), (1, 2, 3), qk, [0.5, 0.6, 0.7])]
    got = h.align(enc, [SP.sot], [[1, 2, 3]], [12])
    assert isinstance(got[0], AlignmentResult) and got[0].text_token_probs == [0.5, 0.6, 0.7]
    assert got[0].alignments[0] == (0, 0) and got[0].alignments[-1] == (3, 5)
    assert h.align(enc, [SP.sot], [[1, 2, 4]], [12]) == ["ct2"]  # other tokens
    assert h.align(enc + 1, [SP.sot], [[1, 2, 3]], [12]) == ["ct2"]  # another window


def test_median_filter_and_dtw_against_plain_references() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    x[0, 0, 10:20] = 0.25  # ties
    for width in (7, 5):
        r = width // 2
        padded = np.pad(x, [(0, 0), (0, 0), (r, r)], mode="reflect")  # CTranslate2's mirrored edges
        ref = np.stack([np.median(padded[..., j:j + width], axis=-1) for j in range(x.shape[-1])], axis=-1)
        assert np.array_equal(median_filter(x, width), ref.astype(np.float32))
    assert np.array_equal(median_filter(x[..., :3], 7), x[..., :3])  # too short: passes through

    def plain_dtw(m: np.ndarray) -> list[tuple[int, int]]:  # CTranslate2's negative_dtw, cell by cell
        n, k = m.shape
        cost = np.full((n + 1, k + 1), np.inf)
        cost[0, 0] = 0
        trace = np.zeros((n + 1, k + 1), int)
        for j in range(1, k + 1):
            for i in range(1, n + 1):
                c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
                c, t = (c0, 0) if c0 < c1 and c0 < c2 else (c1, 1) if c1 < c0 and c1 < c2 else (c2, 2)
                cost[i, j] = -m[i - 1, j - 1] + c
                trace[i, j] = t
        trace[0, :] = 2
        trace[:, 0] = 1
        path, i, j = [], n, k
        while i > 0 or j > 0:
            path.append((i - 1, j - 1))
            t = trace[i, j]
            i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
        return path[::-1]

    for shape in ((5, 30), (12, 12), (1, 9), (9, 1)):
        m = rng.standard_normal(shape)
        assert negative_dtw(m) == plain_dtw(m), shape


def test_loop_rules() -> None:
    from types import SimpleNamespace

    from vocalis.triage.transcript import loop_start, plan_windows

    assert _looping([5, 6, 7] + [1, 2] * 21, 40)  # the last 40 tokens repeat the 40 two before them
    assert not _looping([5, 6, 7] + [1, 2] * 20, 40)
    assert not _looping(list(range(100)), 40)

    def words(text: str) -> list[Any]:
        return [SimpleNamespace(word=" " + w) for w in text.split()]

    said = "my father is not breathing please come"
    assert loop_start(words(said)) is None
    assert loop_start(words(said + " ha ha ha ha")) is None  # laughter, not a loop
    looped = words(said + " oh my god," * 6)
    assert loop_start(looped) == len(said.split()) + 2 * 3  # the words before it and two periods kept
    assert loop_start(words(said + " ha" * 12)) == len(said.split()) + 2

    assert plan_windows([10, 10, 5]) == [(0.0, 25.0)]
    assert plan_windows([12.0, 12.0, 12.0]) == [(0.0, 24.0), (24.0, 36.0)]  # filled, cut at a pause
    assert plan_windows([45.0]) == [(0.0, 30.0), (30.0, 45.0)]  # no pause fits: cut inside the span
    assert plan_windows([]) == []


def test_transcriber_cuts_a_repetition_loop_and_decodes_the_rest_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A window whose words end in a loop keeps the words before it (and two periods) and the audio
    after them is decoded again; a loop that comes back is cut without a third decode."""
    from types import SimpleNamespace

    import faster_whisper

    from vocalis.triage import transcript

    asked: list[list[tuple[float, float]]] = []

    from faster_whisper.transcribe import Segment, Word

    def seg(a: float, words: list[tuple[str, float, float]]) -> Any:
        ws = [Word(start=s, end=e, word=" " + w, probability=0.9) for w, s, e in words]
        return Segment(id=1, seek=int(a * 100), start=ws[0].start, end=ws[-1].end, text="".join(w.word for w in ws),
                       tokens=[1], avg_logprob=-0.2, compression_ratio=1.0, no_speech_prob=0.01, words=ws,
                       temperature=0.0)

    class FakePipeline:
        def __init__(self, model: Any) -> None:
            pass

        def transcribe(self, audio: np.ndarray, clip_timestamps: list[dict[str, float]], **kw: Any) -> Any:
            assert kw["without_timestamps"] and kw["word_timestamps"]
            windows = [(c["start"], c["end"]) for c in clip_timestamps]
            asked.append(windows)
            out = []
            for a, _ in windows:
                if a == 0.0:  # "fire in the kitchen" then a "ha" loop from 2.0 s on
                    out.append(seg(a, [("fire", 0.1, 0.5), ("in", 0.5, 0.7), ("the", 0.7, 0.9), ("kitchen", 0.9, 1.5)]
                                   + [("ha", 2.0 + 0.1 * k, 2.1 + 0.1 * k) for k in range(20)]))
                elif len(asked) == 2:  # the audio after the kept words: more speech, then the loop again
                    out.append(seg(a, [("send", a + 0.5, a + 0.9), ("help", a + 1.0, a + 1.4)]
                                   + [("oh", a + 2 + 0.2 * k, a + 2.1 + 0.2 * k) for k in range(12)]))
                else:  # the audio after "oh oh": the loop again, cut without a fourth decode
                    out.append(seg(a, [("now", a + 0.2, a + 0.5)] + [("oh", a + 1 + 0.2 * k, a + 1.1 + 0.2 * k)
                                                                      for k in range(12)]))
            return out, SimpleNamespace(language="en")

    monkeypatch.setattr(faster_whisper, "BatchedInferencePipeline", FakePipeline)
    tr = transcript.Transcriber(decoder="ctranslate2")
    model = SimpleNamespace(model=object(), frames_per_second=100)
    monkeypatch.setattr(tr, "_model", lambda: model)
    got = tr.transcribe(np.zeros(10 * 16000, np.float32))
    words = [w.text for w in got.words]
    assert asked[0] == [(0.0, 10.0)] and asked[1] == [(pytest.approx(2.2), 10.0)]  # resumed after "ha ha"
    assert len(asked) == 1 + transcript.MAX_REDECODES and asked[2] == [(pytest.approx(4.5), 10.0)]
    assert words == ["fire", "in", "the", "kitchen", "ha", "ha", "send", "help", "oh", "oh", "now", "oh", "oh"]
    assert got.segments[0].text == "fire in the kitchen ha ha"
    assert [w.start for w in got.words] == sorted(w.start for w in got.words)
