"""Whisper's text decoder on onnxruntime: greedy decoding with a key/value cache, for faster-whisper.

faster-whisper decodes with CTranslate2. On this project's CPUs (AMD, AVX2, no Intel MKL) its
int8 decoder costs ~8 ms per token for tiny.en, which made the decoder ~45 % of a call's
transcript time. This module builds the decoder of a CTranslate2 Whisper ``model.bin`` as two ONNX
graphs (weights read by :mod:`vocalis.features._ct2`, like the encoder of
:mod:`vocalis.features.whisper_onnx`), quantises their weight products to int8 and runs greedy
decoding on them:

* ``cross``: the encoder output ``[S, d]`` -> each layer's cross-attention keys and values (once
  per 30 s window);
* ``step``: new tokens ``[1, n]`` + the cached self-attention keys/values of the ``P`` tokens
  before them -> logits ``[n, vocab]`` + the cache of ``P + n`` tokens (the prompt in one call,
  then one token per call).

:class:`OnnxWhisperDecoder` answers CTranslate2's ``Whisper.generate`` for what faster-whisper's
greedy transcription asks (one prompt, ``beam_size=1``, no sampling, no repetition penalty):
the suppressed tokens, blank suppression at the first step, Whisper's timestamp rules (pairs,
monotonic, ``max_initial_timestamp_index``, timestamps when their summed probability beats every
text token), ``scores`` (summed log-probabilities of the chosen tokens / length ** length_penalty,
the end token's included) and ``no_speech_prob`` (at the start-of-transcript position, before any
suppression). Anything else (beam search, sampling, language detection, word alignment) goes to the
CTranslate2 model it wraps (:class:`HybridWhisper`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.errors import ModelError
from vocalis.features._ct2 import CT2Model, read_model_bin
from vocalis.features.whisper_onnx import GraphWriter, _session

GRAPH_VERSION = 3  # bump when the exported graphs change (invalidates cached files)
_NEG = np.float32(-np.inf)

_build_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------
# Weights


@dataclass
class DecoderWeights:
    """Float32 Whisper-decoder weights from a CTranslate2 model (``[out, in]`` layouts)."""

    embeddings: np.ndarray  # [vocab, d] (also the output projection)
    positions: np.ndarray  # [n_ctx, d]
    blocks: list[dict[str, np.ndarray]]
    ln_g: np.ndarray
    ln_b: np.ndarray
    num_heads: int

    @property
    def d_model(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


def decoder_weights(model: CT2Model) -> DecoderWeights:
    """The decoder weights of a CTranslate2 ``WhisperSpec`` model (fused q/k/v, fused cross k/v)."""
    if not model.spec.startswith("Whisper"):
        raise ModelError(f"CTranslate2 spec={model.spec!r} is not a Whisper model")
    from vocalis.features.whisper_onnx import _bias

    for flag in ("decoder/scale_embeddings", "decoder/alibi"):
        if flag in model.raw and model.scalar(flag):
            raise ModelError(f"CTranslate2 Whisper decoder with {flag}=1 is not supported")
    p0 = "decoder/"
    blocks = []
    i = 0
    while f"{p0}layer_{i}/ffn/linear_0/weight" in model.raw:
        p = f"{p0}layer_{i}/"
        d = model.get(p + "self_attention/layer_norm/gamma").shape[0]
        qkv = model.get(p + "self_attention/linear_0/weight")
        kv = model.get(p + "attention/linear_1/weight")
        if qkv.shape[0] != 3 * d or kv.shape[0] != 2 * d:
            raise ModelError(f"decoder layer {i}: expected fused q/k/v ({3 * d}) and cross k/v ({2 * d}) projections, "
                             f"got {qkv.shape[0]} and {kv.shape[0]}")
        blocks.append({
            "ln1_g": model.get(p + "self_attention/layer_norm/gamma"),
            "ln1_b": model.get(p + "self_attention/layer_norm/beta"),
            "qkv_w": qkv, "qkv_b": _bias(model, p + "self_attention/linear_0/bias", 3 * d),
            "out_w": model.get(p + "self_attention/linear_1/weight"),
            "out_b": _bias(model, p + "self_attention/linear_1/bias", d),
            "ln2_g": model.get(p + "attention/layer_norm/gamma"),
            "ln2_b": model.get(p + "attention/layer_norm/beta"),
            "q_w": model.get(p + "attention/linear_0/weight"),
            "q_b": _bias(model, p + "attention/linear_0/bias", d),
            "kv_w": kv, "kv_b": _bias(model, p + "attention/linear_1/bias", 2 * d),
            "xout_w": model.get(p + "attention/linear_2/weight"),
            "xout_b": _bias(model, p + "attention/linear_2/bias", d),
            "ln3_g": model.get(p + "ffn/layer_norm/gamma"),
            "ln3_b": model.get(p + "ffn/layer_norm/beta"),
            "fc1_w": model.get(p + "ffn/linear_0/weight"), "fc1_b": model.get(p + "ffn/linear_0/bias"),
            "fc2_w": model.get(p + "ffn/linear_1/weight"), "fc2_b": model.get(p + "ffn/linear_1/bias"),
        })
        i += 1
    if not blocks:
        raise ModelError("CTranslate2 Whisper model has no decoder layers")
    return DecoderWeights(
        embeddings=model.get(p0 + "embeddings/weight"),
        positions=model.get(p0 + "position_encodings/encodings"),
        blocks=blocks,
        ln_g=model.get(p0 + "layer_norm/gamma"),
        ln_b=model.get(p0 + "layer_norm/beta"),
        num_heads=model.scalar(p0 + "num_heads"),
    )


# ---------------------------------------------------------------------------------------------
# ONNX graphs


def build_cross(weights: DecoderWeights) -> Any:
    """``encoder`` ``[S, d]`` -> ``cross_k_i`` ``[h, dh, S]`` (transposed) and ``cross_v_i`` ``[h, S, dh]`` per layer."""
    from onnx import TensorProto

    g = GraphWriter()
    d, h = weights.d_model, weights.num_heads
    dh = d // h
    shape = g.const("kv_shape", np.array([-1, 2, h, dh], np.int64))
    outs = []
    for i, b in enumerate(weights.blocks):
        kv = g.node("Transpose", [g.node("Reshape", [g.linear("encoder", b["kv_w"], b["kv_b"], f"layer_{i}.kv"), shape])],
                    perm=[1, 2, 0, 3])  # [2, h, S, dh]
        k = g.node("Gather", [kv, g.const(f"layer_{i}.idx0", np.array(0, np.int64))], axis=0)
        g.node("Transpose", [k], out=f"cross_k_{i}", perm=[0, 2, 1])  # keys transposed once per window
        g.node("Gather", [kv, g.const(f"layer_{i}.idx1", np.array(1, np.int64))], out=f"cross_v_{i}", axis=0)
        outs.append(g.helper.make_tensor_value_info(f"cross_k_{i}", TensorProto.FLOAT, [h, dh, "frames"]))
        outs.append(g.helper.make_tensor_value_info(f"cross_v_{i}", TensorProto.FLOAT, [h, "frames", dh]))
    return g.model("whisper_decoder_cross", [g.helper.make_tensor_value_info("encoder", TensorProto.FLOAT, ["frames", d])],
                   outs)


def build_step(weights: DecoderWeights) -> Any:
    """``tokens`` ``[1, n]`` + ``past_k_i``/``past_v_i`` ``[h, P, dh]`` + ``cross_k_i``/``cross_v_i`` ->
    ``logits`` ``[n, vocab]`` + ``present_k_i``/``present_v_i`` ``[h, P + n, dh]``."""
    from onnx import TensorProto

    g = GraphWriter()
    vi = g.helper.make_tensor_value_info
    d, h = weights.d_model, weights.num_heads
    dh = d // h
    scale = np.float32(1.0 / np.sqrt(dh))
    zero, one = g.const("i0", np.array([0], np.int64)), g.const("i1", np.array([1], np.int64))
    axis0 = g.const("axis0", np.array([0], np.int64))
    tok = g.node("Squeeze", ["tokens", axis0])  # [n]
    n = g.node("Slice", [g.node("Shape", ["tokens"]), one, g.const("i2", np.array([2], np.int64))])  # [1]
    past = g.node("Slice", [g.node("Shape", ["past_k_0"]), one, g.const("i2b", np.array([2], np.int64))])  # [1]
    total = g.node("Add", [past, n])
    x = g.node("Cast", [g.node("Gather", [g.const("embeddings", weights.embeddings.astype(np.float16)), tok], axis=0)],
               to=TensorProto.FLOAT)
    pos = g.node("Slice", [g.const("positions", weights.positions.astype(np.float32)), past, total, axis0])
    x = g.node("Add", [x, pos])  # [n, d]
    # causal mask over [past + new]: new token r (at position past + r) sees columns <= past + r
    rows = g.node("Range", [g.node("Squeeze", [past, axis0]), g.node("Squeeze", [total, axis0]),
                            g.const("s1", np.array(1, np.int64))])
    cols = g.node("Range", [g.const("s0", np.array(0, np.int64)), g.node("Squeeze", [total, axis0]), "s1"])
    allowed = g.node("LessOrEqual", [g.node("Unsqueeze", [cols, zero]), g.node("Unsqueeze", [rows, one])])
    mask = g.node("Where", [allowed, g.const("f0", np.array(0.0, np.float32)),
                            g.const("fneg", np.array(-1e9, np.float32))])  # [n, past + n]
    heads = g.const("heads_shape", np.array([-1, h, dh], np.int64))
    qkv_shape = g.const("qkv_shape", np.array([-1, 3, h, dh], np.int64))
    merge = g.const("merge_shape", np.array([-1, d], np.int64))
    inputs = [vi("tokens", TensorProto.INT64, [1, "n"])]
    outputs = [vi("logits", TensorProto.FLOAT, ["n", weights.embeddings.shape[0]])]
    for i, b in enumerate(weights.blocks):
        p = f"layer_{i}"
        inputs += [vi(f"past_{kind}_{i}", TensorProto.FLOAT, [h, "past", dh]) for kind in "kv"]
        inputs += [vi(f"cross_k_{i}", TensorProto.FLOAT, [h, dh, "frames"]),
                   vi(f"cross_v_{i}", TensorProto.FLOAT, [h, "frames", dh])]
        outputs += [vi(f"present_{kind}_{i}", TensorProto.FLOAT, [h, "total", dh]) for kind in "kv"]
        # self-attention (the 1/sqrt(dh) scale folded into the query projection)
        qkv_w, qkv_b = b["qkv_w"].copy(), b["qkv_b"].copy()
        qkv_w[:d] *= scale
        qkv_b[:d] *= scale
        y = g.layer_norm(x, b["ln1_g"], b["ln1_b"], p + ".ln1")
        qkv = g.node("Transpose", [g.node("Reshape", [g.linear(y, qkv_w, qkv_b, p + ".qkv"), qkv_shape])],
                     perm=[1, 2, 0, 3])  # [3, h, n, dh]
        q, k, v = (g.node("Gather", [qkv, g.const(f"{p}.idx{j}", np.array(j, np.int64))], axis=0) for j in range(3))
        k_all = g.node("Concat", [f"past_k_{i}", k], out=f"present_k_{i}", axis=1)
        v_all = g.node("Concat", [f"past_v_{i}", v], out=f"present_v_{i}", axis=1)
        s = g.node("Add", [g.node("MatMul", [q, g.node("Transpose", [k_all], perm=[0, 2, 1])]), mask])
        a = g.node("MatMul", [g.node("Softmax", [s], axis=-1), v_all])
        a = g.node("Reshape", [g.node("Transpose", [a], perm=[1, 0, 2]), merge])
        x = g.node("Add", [x, g.linear(a, b["out_w"], b["out_b"], p + ".out")])
        # cross-attention on the window's encoder output
        y = g.layer_norm(x, b["ln2_g"], b["ln2_b"], p + ".ln2")
        q = g.node("Transpose", [g.node("Reshape", [g.linear(y, b["q_w"] * scale, b["q_b"] * scale, p + ".q"), heads])],
                   perm=[1, 0, 2])  # [h, n, dh]
        s = g.node("MatMul", [q, f"cross_k_{i}"])
        a = g.node("MatMul", [g.node("Softmax", [s], axis=-1), f"cross_v_{i}"])
        a = g.node("Reshape", [g.node("Transpose", [a], perm=[1, 0, 2]), merge])
        x = g.node("Add", [x, g.linear(a, b["xout_w"], b["xout_b"], p + ".xout")])
        y = g.layer_norm(x, b["ln3_g"], b["ln3_b"], p + ".ln3")
        x = g.node("Add", [x, g.linear(g.gelu(g.linear(y, b["fc1_w"], b["fc1_b"], p + ".fc1")),
                                       b["fc2_w"], b["fc2_b"], p + ".fc2")])
    x = g.layer_norm(x, weights.ln_g, weights.ln_b, "ln_final")
    g.node("MatMul", [x, g.const("projection", weights.embeddings.T.astype(np.float32))], out="logits")
    return g.model("whisper_decoder_step", inputs, outputs, {"n_ctx": str(weights.positions.shape[0])})


def ensure_graphs(model_dir: Path, quantized: bool = True) -> tuple[Path, Path]:
    """Paths of the cached ``cross`` and ``step`` graphs of a CTranslate2 Whisper directory (built if missing)."""
    from vocalis.features.whisper_onnx import _atomic_write, _cache_key, backbone_dir, quantize_weights

    model_bin = Path(model_dir) / "model.bin"
    key = f"{_cache_key(model_bin)}.dec{GRAPH_VERSION}"
    out: list[Path] = []
    with _build_lock:
        weights: DecoderWeights | None = None
        for part, build in (("cross", build_cross), ("step", build_step)):
            fp32 = backbone_dir() / f"{key}.{part}.onnx"
            int8 = backbone_dir() / f"{key}.{part}.int8.onnx"
            want = int8 if quantized else fp32
            if not want.is_file():
                if not fp32.is_file():
                    weights = weights or decoder_weights(read_model_bin(model_bin))
                    _atomic_write(fp32, build(weights).SerializeToString())
                if quantized:
                    quantize_weights(fp32, int8)
            out.append(want)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# Greedy decoding


@dataclass
class GenerationResult:
    """The fields of CTranslate2's ``WhisperGenerationResult`` that faster-whisper reads."""

    sequences_ids: list[list[int]]
    scores: list[float]
    no_speech_prob: float

    @property
    def sequences(self) -> list[list[str]]:  # pragma: no cover - faster-whisper reads the ids
        return [[str(t) for t in s] for s in self.sequences_ids]


@dataclass(frozen=True)
class SpecialTokens:
    eot: int
    sot: int
    no_timestamps: int
    timestamp_begin: int
    no_speech: int | None
    suppress_begin: tuple[int, ...]  # the blank and end tokens suppressed at the first step
    suppress: tuple[int, ...]  # the model's default suppressed tokens (``suppress_tokens=[-1]``)


def special_tokens(model_dir: Path) -> SpecialTokens:
    """Special token ids from the CTranslate2 model's ``vocabulary`` and ``config.json``."""
    d = Path(model_dir)
    vocab_file = next((d / f for f in ("vocabulary.txt", "vocabulary.json") if (d / f).is_file()), None)
    if vocab_file is None:
        raise ModelError(f"Whisper model at {d} has no vocabulary.txt/vocabulary.json")
    if vocab_file.suffix == ".json":
        tokens = list(json.loads(vocab_file.read_text(encoding="utf-8")))
    else:
        tokens = vocab_file.read_text(encoding="utf-8").split("\n")
    ids = {t: i for i, t in enumerate(tokens)}
    cfg = json.loads((d / "config.json").read_text(encoding="utf-8")) if (d / "config.json").is_file() else {}
    try:
        no_ts = ids["<|notimestamps|>"]
        return SpecialTokens(
            eot=ids["<|endoftext|>"], sot=ids["<|startoftranscript|>"], no_timestamps=no_ts,
            timestamp_begin=no_ts + 1, no_speech=ids.get("<|nospeech|>", ids.get("<|nocaptions|>")),
            suppress_begin=tuple(cfg.get("suppress_ids_begin", [])),
            suppress=tuple(cfg.get("suppress_ids", [])),
        )
    except KeyError as e:
        raise ModelError(f"Whisper vocabulary at {vocab_file} has no {e} token") from e


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum(dtype=np.float64))).astype(x.dtype)


def _timestamp_rules(logits: np.ndarray, seq: list[int], sp: SpecialTokens, max_initial: int | None) -> np.ndarray:
    """Whisper's timestamp rules on one step's ``logits`` (in place; ``seq`` = the tokens sampled so far).

    Returns the log-probabilities of the final logits."""
    tb = sp.timestamp_begin
    logits[sp.no_timestamps] = _NEG
    if seq:
        last_ts = seq[-1] >= tb
        penultimate_ts = len(seq) < 2 or seq[-2] >= tb
        if last_ts:
            if penultimate_ts:  # a pair is complete: text (or the end) next
                logits[tb:] = _NEG
            else:  # an opening timestamp: another timestamp or the end, no text
                logits[: sp.eot] = _NEG
        stamps = [t for t in seq if t >= tb]
        if stamps:  # timestamps do not decrease (CTranslate2's rule: an equal one is allowed)
            logits[tb:stamps[-1]] = _NEG
    else:
        logits[:tb] = _NEG  # the first token is a timestamp
        if max_initial is not None:
            logits[tb + max_initial + 1 :] = _NEG
    logp = _log_softmax(logits)
    ts = logp[tb:]
    top = ts.max()
    if np.isfinite(top) and top + np.log(np.exp(ts - top).sum()) > logp[:tb].max():
        logits[:tb] = _NEG
        return _log_softmax(logits)
    return logp


class OnnxWhisperDecoder:
    """Greedy Whisper decoding on the ``cross``/``step`` graphs of :func:`ensure_graphs`."""

    def __init__(self, model_dir: str | Path, *, threads: int = 1, quantized: bool = True) -> None:
        self.model_dir = Path(model_dir)
        cross, step = ensure_graphs(self.model_dir, quantized=quantized)
        self._cross = _session(cross, threads, "decoder")
        self._step = _session(step, threads, "decoder")
        self.n_layers = sum(1 for i in self._cross.get_outputs() if i.name.startswith("cross_k_"))
        shape = self._step.get_inputs()[1].shape
        self._heads, self._dh = int(shape[0]), int(shape[2])
        self.tokens = special_tokens(self.model_dir)
        self._n_ctx = int(self._step.get_modelmeta().custom_metadata_map.get("n_ctx", 448))

    def generate(self, encoder_output: np.ndarray, prompt: list[int], *, max_length: int = 448,
                 length_penalty: float = 1.0, suppress_blank: bool = True,
                 suppress_tokens: list[int] | tuple[int, ...] | None = (-1,),
                 max_initial_timestamp_index: int | None = 50) -> GenerationResult:
        """Greedy continuation of ``prompt`` over ``encoder_output`` ``[S, d]`` (one window)."""
        sp = self.tokens
        enc = np.ascontiguousarray(np.asarray(encoder_output, np.float32).reshape(-1, encoder_output.shape[-1]))
        cross = self._cross.run(None, {"encoder": enc})
        feed: dict[str, np.ndarray] = {}
        empty = np.zeros((self._heads, 0, self._dh), np.float32)
        for i in range(self.n_layers):
            feed[f"cross_k_{i}"], feed[f"cross_v_{i}"] = cross[2 * i], cross[2 * i + 1]
            feed[f"past_k_{i}"] = feed[f"past_v_{i}"] = empty
        suppress = [t for t in (suppress_tokens or ()) if t >= 0]
        if suppress_tokens and -1 in suppress_tokens:
            suppress += list(sp.suppress)
        suppress_idx = np.unique(np.asarray(suppress, np.int64)) if suppress else np.zeros(0, np.int64)
        timestamps = prompt[-1] != sp.no_timestamps  # as CTranslate2: a prompt ending in <|notimestamps|>
        tokens: list[int] = []
        cum = 0.0
        no_speech = 0.0
        nxt = np.asarray([prompt], np.int64)
        # as CTranslate2 4.x (measured): at most min(max_length // 2, max_length - start) new tokens,
        # start = the position of <|startoftranscript|> after a previous-text prompt, else 0 (224 new
        # tokens for 448 and [sot]; 29 for 60 and a 32-token previous-text prompt); positions stop at n_ctx
        start = prompt.index(sp.sot) if sp.sot in prompt and prompt[0] != sp.sot else 0
        n_new = min(max_length // 2, max_length - start, self._n_ctx - len(prompt))
        for step in range(max(0, n_new)):
            feed["tokens"] = nxt
            out = self._step.run(None, feed)
            logits = out[0]
            for i in range(self.n_layers):
                feed[f"past_k_{i}"], feed[f"past_v_{i}"] = out[1 + 2 * i], out[2 + 2 * i]
            if step == 0 and sp.no_speech is not None and sp.sot in prompt:
                at = logits[prompt.index(sp.sot)].astype(np.float64)
                no_speech = float(np.exp(_log_softmax(at)[sp.no_speech]))
            row = logits[-1].astype(np.float32, copy=True)
            row[suppress_idx] = _NEG
            if step == 0 and suppress_blank:
                row[list(sp.suppress_begin)] = _NEG
            logp = (_timestamp_rules(row, tokens, sp, max_initial_timestamp_index) if timestamps
                    else _log_softmax(row))
            t = int(np.argmax(logp))
            cum += float(logp[t])
            if t == sp.eot:
                break
            tokens.append(t)
            nxt = np.asarray([[t]], np.int64)
        score = cum / (max(len(tokens), 1) ** length_penalty)
        return GenerationResult([tokens], [score], no_speech)


_UNSUPPORTED = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "sampling_topk": 1,
                "sampling_temperature": 1.0, "num_hypotheses": 1, "beam_size": 1}


class HybridWhisper:
    """A CTranslate2 ``Whisper`` whose greedy ``generate`` runs on :class:`OnnxWhisperDecoder`.

    Every other method and attribute (``align``, ``detect_language``, ``is_multilingual``, beam
    search or sampling calls) is the wrapped CTranslate2 model's.
    """

    def __init__(self, ct2: Any, decoder: OnnxWhisperDecoder) -> None:
        self._ct2 = ct2
        self.decoder = decoder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ct2, name)

    def generate(self, features: Any, prompts: list[list[int]], **kw: Any) -> list[Any]:
        plain = all(kw.get(k, v) == v for k, v in _UNSUPPORTED.items()) and not kw.get("return_alternatives")
        if not plain or kw.get("patience", 1) != 1:
            return self._ct2.generate(features, prompts, **kw)  # type: ignore[no-any-return]
        enc = np.asarray(features, np.float32)
        if enc.ndim == 2:
            enc = enc[None]
        if enc.shape[0] != len(prompts):
            raise ModelError(f"generate: {enc.shape[0]} encoder outputs for {len(prompts)} prompts")
        return [
            self.decoder.generate(e, list(p), max_length=int(kw.get("max_length", 448)),
                                  length_penalty=float(kw.get("length_penalty", 1.0)),
                                  suppress_blank=bool(kw.get("suppress_blank", True)),
                                  suppress_tokens=kw.get("suppress_tokens", (-1,)),
                                  max_initial_timestamp_index=kw.get("max_initial_timestamp_index", 50))
            for e, p in zip(enc, prompts)
        ]
