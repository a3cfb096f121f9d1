"""Whisper's text decoder on onnxruntime: greedy decoding with a key/value cache, for faster-whisper.

faster-whisper decodes with CTranslate2. On this project's CPUs (AMD, AVX2, no Intel MKL) its
int8 decoder costs ~8 ms per token for tiny.en, which made the decoder ~45 % of a call's
transcript time. This module builds the decoder of a CTranslate2 Whisper ``model.bin`` as two ONNX
graphs (weights read by :mod:`vocalis.features._ct2`, like the encoder of
:mod:`vocalis.features.whisper_onnx`), quantises their weight products to int8 and runs greedy
decoding on them:

* ``cross``: the encoder outputs ``[B, S, d]`` -> each layer's cross-attention keys and values
  (once per 30 s window);
* ``step``: new tokens ``[B, n]`` + the cached self-attention keys/values of the ``P`` tokens
  before them -> logits ``[B, n, vocab]`` + the cache of ``P + n`` tokens (the prompt in one call,
  then one token per call) + the alignment heads' cross-attention scores. Several windows are
  decoded together: they share the reads of the 51,864-word output projection, the largest part
  of a step.

:class:`OnnxWhisperDecoder` answers CTranslate2's ``Whisper.generate`` for what faster-whisper's
greedy transcription asks (one prompt, ``beam_size=1``, no sampling, no repetition penalty):
the suppressed tokens, blank suppression at the first step, Whisper's timestamp rules (pairs,
monotonic, ``max_initial_timestamp_index``, timestamps when their summed probability beats every
text token), ``scores`` (summed log-probabilities of the chosen tokens / length ** length_penalty,
the end token's included) and ``no_speech_prob`` (at the start-of-transcript position, before any
suppression). Windows decoded without timestamp tokens keep their alignment heads' scores, from
which :func:`align_trace` times the words as CTranslate2's ``align`` does from a second pass.
Anything else (beam search, sampling, language detection, aligning timestamped windows) goes to the
CTranslate2 model it wraps (:class:`HybridWhisper`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.errors import ModelError
from vocalis.features._ct2 import CT2Model, read_model_bin
from vocalis.features.whisper_onnx import GraphWriter, _session

GRAPH_VERSION = 5  # bump when the exported graphs change (invalidates cached files)
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
    """``encoder`` ``[B, S, d]`` -> ``cross_k_i`` ``[B, h, dh, S]`` (transposed) and ``cross_v_i`` ``[B, h, S, dh]``
    per layer."""
    from onnx import TensorProto

    g = GraphWriter()
    d, h = weights.d_model, weights.num_heads
    dh = d // h
    shape = g.const("kv_shape", np.array([0, 0, 2, h, dh], np.int64))
    outs = []
    for i, b in enumerate(weights.blocks):
        kv = g.node("Transpose", [g.node("Reshape", [g.linear("encoder", b["kv_w"], b["kv_b"], f"layer_{i}.kv"), shape])],
                    perm=[2, 0, 3, 1, 4])  # [2, B, h, S, dh]
        k = g.node("Gather", [kv, g.const(f"layer_{i}.idx0", np.array(0, np.int64))], axis=0)
        g.node("Transpose", [k], out=f"cross_k_{i}", perm=[0, 1, 3, 2])  # keys transposed once per window
        g.node("Gather", [kv, g.const(f"layer_{i}.idx1", np.array(1, np.int64))], out=f"cross_v_{i}", axis=0)
        outs.append(g.helper.make_tensor_value_info(f"cross_k_{i}", TensorProto.FLOAT, ["batch", h, dh, "frames"]))
        outs.append(g.helper.make_tensor_value_info(f"cross_v_{i}", TensorProto.FLOAT, ["batch", h, "frames", dh]))
    encoder = g.helper.make_tensor_value_info("encoder", TensorProto.FLOAT, ["batch", "frames", d])
    return g.model("whisper_decoder_cross", [encoder], outs)


def build_step(weights: DecoderWeights, align_heads: tuple[tuple[int, int], ...] = ()) -> Any:
    """``tokens`` ``[B, n]`` + ``past_k_i``/``past_v_i`` ``[B, h, P, dh]`` + ``cross_k_i``/``cross_v_i`` ->
    ``logits`` ``[B, n, vocab]`` + ``present_k_i``/``present_v_i`` ``[B, h, P + n, dh]`` and, when the model
    names its alignment heads (``align_heads``, ``(layer, head)`` pairs), ``align_qk`` ``[B, heads, n, S]``: those heads'
    scaled cross-attention scores before the softmax (what word timing reads)."""
    from onnx import TensorProto

    g = GraphWriter()
    vi = g.helper.make_tensor_value_info
    d, h = weights.d_model, weights.num_heads
    dh = d // h
    scale = np.float32(1.0 / np.sqrt(dh))
    zero, one = g.const("i0", np.array([0], np.int64)), g.const("i1", np.array([1], np.int64))
    two, three = g.const("i2", np.array([2], np.int64)), g.const("i3", np.array([3], np.int64))
    axis0 = g.const("axis0", np.array([0], np.int64))
    n = g.node("Slice", [g.node("Shape", ["tokens"]), one, two])  # [1]
    past = g.node("Slice", [g.node("Shape", ["past_k_0"]), two, three])  # [1]
    total = g.node("Add", [past, n])
    x = g.node("Cast", [g.node("Gather", [g.const("embeddings", weights.embeddings.astype(np.float16)), "tokens"],
                               axis=0)], to=TensorProto.FLOAT)  # [B, n, d]
    pos = g.node("Slice", [g.const("positions", weights.positions.astype(np.float32)), past, total, axis0])
    x = g.node("Add", [x, pos])  # [B, n, d]
    # causal mask over [past + new]: new token r (at position past + r) sees columns <= past + r
    rows = g.node("Range", [g.node("Squeeze", [past, axis0]), g.node("Squeeze", [total, axis0]),
                            g.const("s1", np.array(1, np.int64))])
    cols = g.node("Range", [g.const("s0", np.array(0, np.int64)), g.node("Squeeze", [total, axis0]), "s1"])
    allowed = g.node("LessOrEqual", [g.node("Unsqueeze", [cols, zero]), g.node("Unsqueeze", [rows, one])])
    mask = g.node("Where", [allowed, g.const("f0", np.array(0.0, np.float32)),
                            g.const("fneg", np.array(-1e9, np.float32))])  # [n, past + n]
    heads = g.const("heads_shape", np.array([0, 0, h, dh], np.int64))
    qkv_shape = g.const("qkv_shape", np.array([0, 0, 3, h, dh], np.int64))
    merge = g.const("merge_shape", np.array([0, 0, d], np.int64))
    inputs = [vi("tokens", TensorProto.INT64, ["batch", "n"])]
    outputs = [vi("logits", TensorProto.FLOAT, ["batch", "n", weights.embeddings.shape[0]])]
    align: list[str] = []
    for i, b in enumerate(weights.blocks):
        p = f"layer_{i}"
        inputs += [vi(f"past_{kind}_{i}", TensorProto.FLOAT, ["batch", h, "past", dh]) for kind in "kv"]
        inputs += [vi(f"cross_k_{i}", TensorProto.FLOAT, ["batch", h, dh, "frames"]),
                   vi(f"cross_v_{i}", TensorProto.FLOAT, ["batch", h, "frames", dh])]
        outputs += [vi(f"present_{kind}_{i}", TensorProto.FLOAT, ["batch", h, "total", dh]) for kind in "kv"]
        # self-attention (the 1/sqrt(dh) scale folded into the query projection)
        qkv_w, qkv_b = b["qkv_w"].copy(), b["qkv_b"].copy()
        qkv_w[:d] *= scale
        qkv_b[:d] *= scale
        y = g.layer_norm(x, b["ln1_g"], b["ln1_b"], p + ".ln1")
        qkv = g.node("Transpose", [g.node("Reshape", [g.linear(y, qkv_w, qkv_b, p + ".qkv"), qkv_shape])],
                     perm=[2, 0, 3, 1, 4])  # [3, B, h, n, dh]
        q, k, v = (g.node("Gather", [qkv, g.const(f"{p}.idx{j}", np.array(j, np.int64))], axis=0) for j in range(3))
        k_all = g.node("Concat", [f"past_k_{i}", k], out=f"present_k_{i}", axis=2)
        v_all = g.node("Concat", [f"past_v_{i}", v], out=f"present_v_{i}", axis=2)
        s = g.node("Add", [g.node("MatMul", [q, g.node("Transpose", [k_all], perm=[0, 1, 3, 2])]), mask])
        a = g.node("MatMul", [g.node("Softmax", [s], axis=-1), v_all])
        a = g.node("Reshape", [g.node("Transpose", [a], perm=[0, 2, 1, 3]), merge])
        x = g.node("Add", [x, g.linear(a, b["out_w"], b["out_b"], p + ".out")])
        # cross-attention on the window's encoder output
        y = g.layer_norm(x, b["ln2_g"], b["ln2_b"], p + ".ln2")
        q = g.node("Transpose", [g.node("Reshape", [g.linear(y, b["q_w"] * scale, b["q_b"] * scale, p + ".q"), heads])],
                   perm=[0, 2, 1, 3])  # [B, h, n, dh]
        s = g.node("MatMul", [q, f"cross_k_{i}"])  # [B, h, n, S]
        here = [hd for layer, hd in align_heads if layer == i]
        if here:
            align.append(g.node("Gather", [s, g.const(f"{p}.align_heads", np.array(here, np.int64))], axis=1))
        a = g.node("MatMul", [g.node("Softmax", [s], axis=-1), f"cross_v_{i}"])
        a = g.node("Reshape", [g.node("Transpose", [a], perm=[0, 2, 1, 3]), merge])
        x = g.node("Add", [x, g.linear(a, b["xout_w"], b["xout_b"], p + ".xout")])
        y = g.layer_norm(x, b["ln3_g"], b["ln3_b"], p + ".ln3")
        x = g.node("Add", [x, g.linear(g.gelu(g.linear(y, b["fc1_w"], b["fc1_b"], p + ".fc1")),
                                       b["fc2_w"], b["fc2_b"], p + ".fc2")])
    x = g.layer_norm(x, weights.ln_g, weights.ln_b, "ln_final")
    g.node("MatMul", [x, g.const("projection", weights.embeddings.T.astype(np.float32))], out="logits")
    if align:
        g.node("Concat", align, out="align_qk", axis=1)
        outputs.append(vi("align_qk", TensorProto.FLOAT, ["batch", len(align_heads), "n", "frames"]))
    return g.model("whisper_decoder_step", inputs, outputs, {"n_ctx": str(weights.positions.shape[0])})


def alignment_heads(model_dir: Path) -> tuple[tuple[int, int], ...]:
    """The ``(layer, head)`` pairs of ``config.json``'s ``alignment_heads`` (empty when it names none)."""
    f = Path(model_dir) / "config.json"
    cfg = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    return tuple((int(layer), int(head)) for layer, head in cfg.get("alignment_heads") or ())


def ensure_graphs(model_dir: Path, quantized: bool = True) -> tuple[Path, Path]:
    """Paths of the cached ``cross`` and ``step`` graphs of a CTranslate2 Whisper directory (built if missing)."""
    from vocalis.features.whisper_onnx import _atomic_write, _cache_key, backbone_dir, quantize_weights

    model_bin = Path(model_dir) / "model.bin"
    key = f"{_cache_key(model_bin)}.dec{GRAPH_VERSION}"
    out: list[Path] = []
    with _build_lock:
        weights: DecoderWeights | None = None
        heads = alignment_heads(model_dir)
        for part, build in (("cross", build_cross), ("step", lambda w: build_step(w, heads))):
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


LOOP_PERIOD = 16  # longest repeated block (tokens) that ``stop_loops`` looks for


def _looping(seq: list[int], tail: int) -> bool:
    """Whether the last ``tail`` tokens of ``seq`` repeat with a period of at most :data:`LOOP_PERIOD`."""
    n = len(seq)
    if n < tail + 1:
        return False
    end = seq[-tail:]
    return any(n >= tail + p and seq[n - tail - p:n - p] == end for p in range(1, LOOP_PERIOD + 1))


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    return m + float(np.log(np.exp(x - m).sum(dtype=np.float64)))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    return x - np.asarray(_logsumexp(x), x.dtype)  # type: ignore[no-any-return]


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


@dataclass
class AlignmentResult:
    """The fields of CTranslate2's ``WhisperAlignmentResult`` that faster-whisper reads."""

    alignments: list[tuple[int, int]]  # (text index, time index) pairs of the DTW path
    text_token_probs: list[float]


@dataclass
class _Trace:
    """What one decoded window leaves for word timing: the alignment heads' scores of every input
    row (the prompt, each text token, then the end token) and each text token's probability."""

    encoder: np.ndarray  # [S, d], to recognise the window in ``align``
    prompt: tuple[int, ...]
    tokens: tuple[int, ...]
    qk: np.ndarray  # [heads, rows, S]
    probs: list[float]


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)  # type: ignore[no-any-return]


# Devillard's median-of-7 selection network (13 compare-exchanges; per step which side is used after)
_MEDIAN7 = ((0, 5, "both"), (0, 3, "both"), (1, 6, "both"), (2, 4, "both"), (0, 1, "max"), (3, 5, "both"),
            (2, 6, "both"), (2, 3, "max"), (3, 6, "min"), (4, 5, "min"), (1, 4, "both"), (1, 3, "max"),
            (3, 4, "min"))


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a ``width`` window along the last axis, mirrored at the edges (CTranslate2's
    ``MedianFilter``; an axis no longer than ``width // 2`` passes through). Width 7 (Whisper's)
    runs a selection network on shifted views: exact, and ~5x faster than a partition."""
    rank = width // 2
    if width < 2 or x.shape[-1] <= rank:
        return x.copy()
    pad = [(0, 0)] * (x.ndim - 1) + [(rank, rank)]
    p = np.pad(x, pad, mode="reflect")
    n = x.shape[-1]
    if width == 7:
        v = [p[..., k:k + n] for k in range(7)]
        for a, b, keep in _MEDIAN7:
            lo = np.minimum(v[a], v[b]) if keep != "max" else v[a]
            if keep != "min":
                v[b] = np.maximum(v[a], v[b])
            v[a] = lo
        return v[3]
    win = np.lib.stride_tricks.sliding_window_view(p, width, axis=-1)
    return np.partition(win, rank, axis=-1)[..., rank]  # type: ignore[no-any-return]


def negative_dtw(x: np.ndarray) -> list[tuple[int, int]]:
    """Dynamic time warping of ``-x`` ``[n, m]`` with CTranslate2's (and openai-whisper's) moves and
    tie rule: the path as ``(row, column)`` pairs. Rows are swept with a prefix-minimum scan (the
    within-row recurrence ``c[j] = v[j] + min(b[j], c[j - 1])`` unrolled), in float64."""
    v = -np.asarray(x, np.float64)
    n, m = v.shape
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        b = np.minimum(cost[i - 1, :-1], cost[i - 1, 1:])  # diagonal or from above, for columns 1..m
        ps = np.cumsum(v[i - 1])
        with np.errstate(invalid="ignore"):
            cost[i, 1:] = ps + np.minimum.accumulate(b - np.concatenate(([0.0], ps[:-1])))
    c0, c1, c2 = cost[:-1, :-1], cost[:-1, 1:], cost[1:, :-1]
    trace = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2)).astype(np.int8)
    path: list[tuple[int, int]] = []
    i, j = n, m
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i - 1, j - 1] if i > 0 and j > 0 else (2 if i == 0 else 1)  # along the edges: left / up
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    return path


def align_trace(trace: _Trace, num_frames: int, median_filter_width: int = 7) -> AlignmentResult:
    """Word-timing alignment of a decoded window from its own decoding pass, as CTranslate2's
    ``Whisper.align`` computes it from a second, teacher-forced pass over the same tokens: the
    alignment heads' attention over the window's ``num_frames // 2`` encoder frames, standardised
    over the rows, median-filtered along time, averaged over the heads, then DTW over the rows from
    ``<|notimestamps|>`` to the last text token."""
    nf = max(1, num_frames // 2)
    w = _softmax(trace.qk[:, :, :nf].astype(np.float32))
    mean = w.mean(axis=1, keepdims=True)
    w = (w - mean) / np.sqrt(((w - mean) ** 2).mean(axis=1, keepdims=True))
    matrix = median_filter(w, median_filter_width).mean(axis=0)
    first = len(trace.prompt) - 1  # the <|notimestamps|> row
    return AlignmentResult(negative_dtw(matrix[first: first + len(trace.tokens) + 1]), list(trace.probs))


class OnnxWhisperDecoder:
    """Greedy Whisper decoding on the ``cross``/``step`` graphs of :func:`ensure_graphs`."""

    def __init__(self, model_dir: str | Path, *, threads: int = 1, quantized: bool = True) -> None:
        self.model_dir = Path(model_dir)
        cross, step = ensure_graphs(self.model_dir, quantized=quantized)
        self._cross = _session(cross, threads, "decoder")
        self._step = _session(step, threads, "decoder")
        self.n_layers = sum(1 for i in self._cross.get_outputs() if i.name.startswith("cross_k_"))
        shape = self._step.get_inputs()[1].shape
        self._heads, self._dh = int(shape[1]), int(shape[3])
        self._outputs = [o.name for o in self._step.get_outputs()]
        self.tokens = special_tokens(self.model_dir)
        self._n_ctx = int(self._step.get_modelmeta().custom_metadata_map.get("n_ctx", 448))

    @property
    def traces_alignment(self) -> bool:
        """Whether the step graph returns the alignment heads' scores (the model names its heads)."""
        return "align_qk" in self._outputs

    def generate(self, encoder_output: np.ndarray, prompt: list[int], **kw: Any) -> GenerationResult:
        """Greedy continuation of ``prompt`` over ``encoder_output`` ``[S, d]`` (one window)."""
        return self.generate_batch(np.asarray(encoder_output)[None], [prompt], **kw)[0][0]

    def generate_batch(self, encoder_output: np.ndarray, prompts: list[list[int]], *, max_length: int = 448,
                       length_penalty: float = 1.0, suppress_blank: bool = True,
                       suppress_tokens: list[int] | tuple[int, ...] | None = (-1,),
                       max_initial_timestamp_index: int | None = 50,
                       trace: bool = False, stop_loops: int = 0) -> tuple[list[GenerationResult], list[_Trace | None]]:
        """Greedy continuations of ``prompts`` over ``encoder_output`` ``[B, S, d]``, decoded together.

        Each window's tokens follow the same rules as when decoded alone; in int8 the activations of
        a step are quantised with one scale for the whole batch, so a window's scores can differ in
        the last digits from a lone decode. A window leaves the batch when it ends. ``trace``: keep,
        for windows decoded without timestamps that end with the end token, what
        :func:`align_trace` needs (one extra step feeds them the end token); the others get None.
        ``stop_loops`` > 0: a window whose last ``stop_loops`` tokens repeat with a period of at most
        :data:`LOOP_PERIOD` tokens ends there, as if it chose the end token (a repetition loop would
        run to the length cap; CTranslate2 has no such rule, so it is off by default).
        """
        sp = self.tokens
        enc = np.asarray(encoder_output, np.float32)
        enc = np.ascontiguousarray(enc.reshape(len(prompts), -1, enc.shape[-1]))
        if len({len(p) for p in prompts}) > 1:  # one step feeds every window the same number of tokens
            pairs = [self.generate_batch(enc[i:i + 1], [p], max_length=max_length, length_penalty=length_penalty,
                                         suppress_blank=suppress_blank, suppress_tokens=suppress_tokens,
                                         max_initial_timestamp_index=max_initial_timestamp_index, trace=trace,
                                         stop_loops=stop_loops)
                     for i, p in enumerate(prompts)]
            return [r for rs, _ in pairs for r in rs], [t for _, ts in pairs for t in ts]
        n_batch = len(prompts)
        cross = self._cross.run(None, {"encoder": enc})
        feed: dict[str, np.ndarray] = {}
        empty = np.zeros((n_batch, self._heads, 0, self._dh), np.float32)
        for i in range(self.n_layers):
            feed[f"cross_k_{i}"], feed[f"cross_v_{i}"] = cross[2 * i], cross[2 * i + 1]
            feed[f"past_k_{i}"] = feed[f"past_v_{i}"] = empty
        suppress = [t for t in (suppress_tokens or ()) if t >= 0]
        if suppress_tokens and -1 in suppress_tokens:
            suppress += list(sp.suppress)
        suppress_idx = np.unique(np.asarray(suppress, np.int64)) if suppress else np.zeros(0, np.int64)
        timestamps = [p[-1] != sp.no_timestamps for p in prompts]  # as CTranslate2: a prompt ending in <|notimestamps|>
        tracing = [trace and self.traces_alignment and not ts for ts in timestamps]
        tokens: list[list[int]] = [[] for _ in prompts]
        cum = [0.0] * n_batch
        no_speech = [0.0] * n_batch
        qk: list[list[np.ndarray]] = [[] for _ in prompts]
        probs: list[list[float]] = [[] for _ in prompts]
        ended = [False] * n_batch  # chose the end token
        # as CTranslate2 4.x (measured): at most min(max_length // 2, max_length - start) new tokens,
        # start = the position of <|startoftranscript|> after a previous-text prompt, else 0 (224 new
        # tokens for 448 and [sot]; 29 for 60 and a 32-token previous-text prompt); positions stop at n_ctx
        n_new = []
        for p in prompts:
            start = p.index(sp.sot) if sp.sot in p and p[0] != sp.sot else 0
            n_new.append(max(0, min(max_length // 2, max_length - start, self._n_ctx - len(p))))
        rows = [b for b in range(n_batch) if n_new[b] > 0]  # the window each batch row decodes
        draining: set[int] = set()  # windows fed the end token for their alignment row only
        nxt = np.asarray([prompts[b] for b in rows], np.int64)
        step = 0
        while rows:
            feed["tokens"] = nxt
            out = dict(zip(self._outputs, self._step.run(None, feed)))
            logits = out["logits"]
            for i in range(self.n_layers):
                feed[f"past_k_{i}"], feed[f"past_v_{i}"] = out[f"present_k_{i}"], out[f"present_v_{i}"]
            keep: list[int] = []
            next_tokens: list[int] = []
            for r, b in enumerate(rows):
                if tracing[b]:
                    qk[b].append(out["align_qk"][r])
                if b in draining:
                    continue
                prompt = prompts[b]
                if step == 0 and sp.no_speech is not None and sp.sot in prompt:
                    at = logits[r, prompt.index(sp.sot)].astype(np.float64)
                    no_speech[b] = float(np.exp(_log_softmax(at)[sp.no_speech]))
                row = logits[r, -1].astype(np.float32, copy=True)
                text_lse = _logsumexp(row[: sp.eot]) if tracing[b] else 0.0
                row[suppress_idx] = _NEG
                if step == 0 and suppress_blank:
                    row[list(sp.suppress_begin)] = _NEG
                logp = (_timestamp_rules(row, tokens[b], sp, max_initial_timestamp_index) if timestamps[b]
                        else _log_softmax(row))
                t = int(np.argmax(logp))
                cum[b] += float(logp[t])
                if t == sp.eot:
                    ended[b] = True
                else:
                    tokens[b].append(t)
                    if tracing[b]:
                        probs[b].append(float(np.exp(float(logits[r, -1, t]) - text_lse)) if t < sp.eot else 0.0)
                    if stop_loops and _looping(tokens[b], stop_loops):
                        ended[b] = True
                        t = sp.eot
                if t != sp.eot and len(tokens[b]) < n_new[b]:
                    keep.append(r)
                    next_tokens.append(t)
                elif ended[b] and tracing[b]:  # one more step: the end token's row
                    draining.add(b)
                    keep.append(r)
                    next_tokens.append(sp.eot)
            if len(keep) < len(rows):
                idx = np.asarray(keep, np.int64)
                for name in list(feed):
                    if name != "tokens":
                        feed[name] = feed[name][idx]
                rows = [rows[r] for r in keep]
            nxt = np.asarray(next_tokens, np.int64)[:, None]
            step += 1
        results = [GenerationResult([tokens[b]], [cum[b] / (max(len(tokens[b]), 1) ** length_penalty)], no_speech[b])
                   for b in range(n_batch)]
        traces: list[_Trace | None] = [
            _Trace(enc[b], tuple(prompts[b]), tuple(tokens[b]), np.concatenate(qk[b], axis=1), probs[b])
            if tracing[b] and ended[b] and qk[b] else None
            for b in range(n_batch)
        ]
        return results, traces


_UNSUPPORTED = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "sampling_topk": 1,
                "sampling_temperature": 1.0, "num_hypotheses": 1, "beam_size": 1}


class HybridWhisper:
    """A CTranslate2 ``Whisper`` whose greedy ``generate`` runs on :class:`OnnxWhisperDecoder`.

    A batch of windows is decoded together. Windows decoded without timestamps keep their
    alignment heads' scores, and ``align`` answers for those windows from them (no second decoder
    pass); every other ``align`` call, and everything else (``detect_language``,
    ``is_multilingual``, beam search or sampling calls), is the wrapped CTranslate2 model's.
    """

    def __init__(self, ct2: Any, decoder: OnnxWhisperDecoder) -> None:
        self._ct2 = ct2
        self.decoder = decoder
        self._local = threading.local()  # the traces of this thread's last generate call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ct2, name)

    def generate(self, features: Any, prompts: list[list[int]], **kw: Any) -> list[Any]:
        if kw.get("sampling_topk", 1) == 1:  # top-1 sampling is greedy at any temperature
            kw.pop("sampling_temperature", None)
        plain = all(kw.get(k, v) == v for k, v in _UNSUPPORTED.items()) and not kw.get("return_alternatives")
        self._local.traces = []
        stop_loops = int(getattr(self._local, "stop_loops", 0))
        if not plain or kw.get("patience", 1) != 1:
            return self._ct2.generate(features, prompts, **kw)  # type: ignore[no-any-return]
        enc = np.asarray(features, np.float32)
        if enc.ndim == 2:
            enc = enc[None]
        if enc.shape[0] != len(prompts):
            raise ModelError(f"generate: {enc.shape[0]} encoder outputs for {len(prompts)} prompts")
        results, traces = self.decoder.generate_batch(
            enc, [list(p) for p in prompts], max_length=int(kw.get("max_length", 448)),
            length_penalty=float(kw.get("length_penalty", 1.0)), suppress_blank=bool(kw.get("suppress_blank", True)),
            suppress_tokens=kw.get("suppress_tokens", (-1,)),
            max_initial_timestamp_index=kw.get("max_initial_timestamp_index", 50), trace=True, stop_loops=stop_loops)
        self._local.traces = [t for t in traces if t is not None]
        return results

    @contextmanager
    def stopping_loops(self, tail: int = 40) -> Iterator[None]:
        """Within the block, greedy decodes on this thread end a window at a repetition loop
        (``OnnxWhisperDecoder.generate_batch``'s ``stop_loops``)."""
        before = getattr(self._local, "stop_loops", 0)
        self._local.stop_loops = tail
        try:
            yield
        finally:
            self._local.stop_loops = before

    def align(self, features: Any, start_sequence: list[int], text_tokens: list[list[int]],
              num_frames: list[int] | int, median_filter_width: int = 7) -> list[Any]:
        """CTranslate2's ``Whisper.align``, from the last ``generate`` call's traces where every
        window of the batch has one (same encoder output, prompt and text tokens)."""
        traces: list[_Trace] = getattr(self._local, "traces", [])
        frames = [int(num_frames)] * len(text_tokens) if isinstance(num_frames, int) else [int(f) for f in num_frames]
        enc = np.asarray(features, np.float32)
        if enc.ndim == 2:
            enc = enc[None]
        found: list[_Trace] = []
        for b, text in enumerate(text_tokens):
            want = ((*start_sequence, self.decoder.tokens.no_timestamps), tuple(text))
            hit = next((t for t in traces if (t.prompt, t.tokens) == want and t.encoder.shape == enc[b].shape
                        and np.array_equal(t.encoder, enc[b])), None)
            if hit is None:
                return self._ct2.align(features, start_sequence, text_tokens, num_frames,  # type: ignore[no-any-return]
                                       median_filter_width=median_filter_width)
            found.append(hit)
        return [align_trace(t, f, median_filter_width) for t, f in zip(found, frames)]
