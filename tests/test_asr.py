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
    _timestamp_rules,
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
        def generate(self, enc: np.ndarray, prompt: list[int], **k: Any) -> str:
            calls.append(f"onnx{enc.shape}")
            return "onnx"

    h = HybridWhisper(Fake(), FakeDecoder())  # type: ignore[arg-type]
    enc = np.zeros((1, 4, 8), np.float32)
    assert h.generate(enc, [[1]], beam_size=1, max_length=448) == ["onnx"]
    assert h.generate(enc, [[1]], beam_size=5) == ["ct2"]
    assert h.generate(enc, [[1]], beam_size=1, sampling_topk=0, sampling_temperature=0.4) == ["ct2"]
    assert h.generate(enc, [[1]], repetition_penalty=1.2) == ["ct2"]
    assert calls == ["onnx(4, 8)", "ct2", "ct2", "ct2"]
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
