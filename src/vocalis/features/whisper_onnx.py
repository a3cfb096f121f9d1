"""Whisper encoder with **every** layer exposed, served by onnxruntime (no torch, no CTranslate2 at run time).

CTranslate2's ``Whisper.encode`` only returns the last layer, while speech-emotion work finds the
intermediate layers of a speech encoder more paralinguistic than its last one. This module reads
the encoder weights straight from the CTranslate2 ``model.bin`` (:mod:`vocalis.features._ct2`),
writes the encoder as an ONNX graph with ``onnx.helper`` (numpy weights, opset 17) and runs it with
onnxruntime. The graph's input is ``mel`` ``[1, n_mels, T]`` (``T`` even, at most 3000) and its
output ``hidden`` ``[L + 1, T / 2, d_model]``: the hidden state after the positional embedding,
after each of the first ``L - 1`` blocks, and after the last block followed by the final layer norm
(that last one equals what CTranslate2's ``encode`` returns).

The graph is built once per model file and cached as
``$VOCALIS_CACHE_DIR/backbones/<key>.onnx`` (default ``~/.cache/vocalis``); ``quantized=True`` adds
an int8 copy made by onnxruntime's dynamic quantisation (``<key>.int8.onnx``). Building needs the
``onnx`` package (``pip install 'vocalis[train]'``); serving a cached graph needs onnxruntime only.

Front end and chunking are those of :class:`vocalis.features.whisper.WhisperEncoder`, so layer
``-1`` of :class:`WhisperLayers` reproduces that extractor (up to float rounding).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.audio.io import resample
from vocalis.errors import ConfigError, ModelError, require
from vocalis.features._ct2 import CT2Model, read_model_bin
from vocalis.features.base import dataclass_config, register
from vocalis.features.logmel import LogMel

POOLINGS = ("mean", "mean_std")
COMBINES = ("concat", "mean")
FRAMES = ("all", "voiced")
SPANS = ("clip", "voiced")
_STEP = 320  # samples of 16 kHz audio per encoder output step (20 ms: hop 160, then stride 2)
GRAPH_VERSION = 1  # bump when the exported graph changes (invalidates cached files)
_MAX_FRAMES = 3000  # Whisper's 30 s context
_MIN_FRAMES = 20  # 0.2 s; shorter clips are padded with the clip's floor (silence)
_LN_EPS = 1e-5

_sessions: dict[tuple[str, int], Any] = {}
_graphs: dict[tuple[str, bool, str], Path] = {}  # (model, quantized, cache dir) -> built graph
_lock = threading.Lock()
_build_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------
# Weights


@dataclass
class EncoderWeights:
    """Float32 Whisper-encoder weights read from a CTranslate2 model (``[out, in]`` layouts)."""

    conv1_w: np.ndarray  # [d, n_mels, 3]
    conv1_b: np.ndarray
    conv2_w: np.ndarray  # [d, d, 3]
    conv2_b: np.ndarray
    positions: np.ndarray  # [n_ctx, d]
    blocks: list[dict[str, np.ndarray]]
    ln_post_g: np.ndarray
    ln_post_b: np.ndarray
    num_heads: int

    @property
    def d_model(self) -> int:
        return int(self.conv1_w.shape[0])

    @property
    def n_mels(self) -> int:
        return int(self.conv1_w.shape[1])

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


def encoder_weights(model: CT2Model) -> EncoderWeights:
    """Collect the encoder weights of a CTranslate2 ``WhisperSpec`` model.

    Attention projections are stored fused (``linear_0`` = q, k, v stacked on the output axis) by
    the converter; separate ``linear_0/1/2`` q/k/v tensors are accepted too.
    """
    if not model.spec.startswith("Whisper"):
        raise ModelError(f"CTranslate2 spec={model.spec!r} is not a Whisper model")
    e = "encoder/"
    blocks = []
    i = 0
    while f"{e}layer_{i}/ffn/linear_0/weight" in model.raw or f"{e}layer_{i}/ffn/linear_0/weight" in model.aliases:
        p = f"{e}layer_{i}/"
        b: dict[str, np.ndarray] = {
            "ln1_g": model.get(p + "self_attention/layer_norm/gamma"),
            "ln1_b": model.get(p + "self_attention/layer_norm/beta"),
            "ln2_g": model.get(p + "ffn/layer_norm/gamma"),
            "ln2_b": model.get(p + "ffn/layer_norm/beta"),
            "fc1_w": model.get(p + "ffn/linear_0/weight"),
            "fc1_b": model.get(p + "ffn/linear_0/bias"),
            "fc2_w": model.get(p + "ffn/linear_1/weight"),
            "fc2_b": model.get(p + "ffn/linear_1/bias"),
        }
        d = b["ln1_g"].shape[0]
        w0 = model.get(p + "self_attention/linear_0/weight")
        if w0.shape[0] == 3 * d:  # fused qkv, output projection in linear_1
            b["qkv_w"] = w0
            b["qkv_b"] = _bias(model, p + "self_attention/linear_0/bias", 3 * d)
            b["out_w"] = model.get(p + "self_attention/linear_1/weight")
            b["out_b"] = _bias(model, p + "self_attention/linear_1/bias", d)
        else:  # separate q, k, v (linear_0..2), output projection in linear_3
            ws = [model.get(p + f"self_attention/linear_{j}/weight") for j in range(3)]
            bs = [_bias(model, p + f"self_attention/linear_{j}/bias", d) for j in range(3)]
            b["qkv_w"] = np.concatenate(ws, axis=0)
            b["qkv_b"] = np.concatenate(bs)
            b["out_w"] = model.get(p + "self_attention/linear_3/weight")
            b["out_b"] = _bias(model, p + "self_attention/linear_3/bias", d)
        blocks.append(b)
        i += 1
    if not blocks:
        raise ModelError("CTranslate2 Whisper model has no encoder layers")
    return EncoderWeights(
        conv1_w=model.get(e + "conv1/weight"),
        conv1_b=model.get(e + "conv1/bias"),
        conv2_w=model.get(e + "conv2/weight"),
        conv2_b=model.get(e + "conv2/bias"),
        positions=model.get(e + "position_encodings/encodings"),
        blocks=blocks,
        ln_post_g=model.get(e + "layer_norm/gamma"),
        ln_post_b=model.get(e + "layer_norm/beta"),
        num_heads=model.scalar(e + "num_heads"),
    )


def _bias(model: CT2Model, name: str, n: int) -> np.ndarray:
    """A bias, or zeros when the model has none (Whisper's key projection has no bias)."""
    if name in model.raw or name in model.aliases:
        return model.get(name)
    return np.zeros(n, np.float32)


# ---------------------------------------------------------------------------------------------
# Numpy reference (verification only; slow)


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return np.asarray(0.5 * x * (1.0 + erf(x / np.sqrt(2.0))), dtype=x.dtype)


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return np.asarray((x - mu) / np.sqrt(var + _LN_EPS) * g + b, dtype=np.float32)


def _conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """``x`` [C_in, T], ``w`` [C_out, C_in, 3], padding 1."""
    xp = np.pad(x, ((0, 0), (1, 1)))
    t_out = (xp.shape[1] - 3) // stride + 1
    cols = np.stack([xp[:, k : k + stride * (t_out - 1) + 1 : stride] for k in range(3)], axis=-1)  # [C_in, T, 3]
    return np.asarray(np.einsum("ctk,ock->ot", cols, w) + b[:, None], dtype=np.float32)


def reference_hidden_states(weights: EncoderWeights, mel: np.ndarray) -> np.ndarray:
    """``[L + 1, T / 2, d]`` hidden states of ``mel`` ``[n_mels, T]``, in plain numpy (float32)."""
    x = _gelu(_conv1d(mel.astype(np.float32), weights.conv1_w, weights.conv1_b, 1))
    x = _gelu(_conv1d(x, weights.conv2_w, weights.conv2_b, 2)).T
    x = x + weights.positions[: x.shape[0]]
    h, d = weights.num_heads, weights.d_model
    dh = d // h
    out = [x]
    for i, b in enumerate(weights.blocks):
        y = _layer_norm(x, b["ln1_g"], b["ln1_b"])
        qkv = y @ b["qkv_w"].T + b["qkv_b"]
        q, k, v = (qkv[:, j * d : (j + 1) * d].reshape(-1, h, dh).transpose(1, 0, 2) for j in range(3))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(dh)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(-1, d)
        x = x + a @ b["out_w"].T + b["out_b"]
        y = _layer_norm(x, b["ln2_g"], b["ln2_b"])
        x = x + _gelu(y @ b["fc1_w"].T + b["fc1_b"]) @ b["fc2_w"].T + b["fc2_b"]
        last = i == len(weights.blocks) - 1
        out.append(_layer_norm(x, weights.ln_post_g, weights.ln_post_b) if last else x)
    return np.stack(out).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# ONNX graph


class GraphWriter:
    """A small ``onnx.helper`` graph writer (numbered nodes, named initialisers, the Whisper blocks'
    pieces); used for the encoder here and the decoder in :mod:`vocalis.asr.decoder`."""

    def __init__(self) -> None:
        require("onnx", "train")
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0
        for name, value in (("sqrt2", np.sqrt(2.0)), ("one", 1.0), ("half", 0.5)):  # for gelu
            self.const(name, np.array(value, np.float32))

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.array(arr, order="C"), name))  # keeps 0-d shapes
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        """Add a node; its output is ``out`` or a fresh ``<op>_<n>`` name. Returns the output name."""
        self._n += 1
        auto = f"{op.lower()}_{self._n}"
        self.nodes.append(self.helper.make_node(op, inputs, [out or auto], name=auto, **attrs))
        return out or auto

    def linear(self, x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
        y = self.node("MatMul", [x, self.const(name + ".weight", w.T.astype(np.float32))])
        return self.node("Add", [y, self.const(name + ".bias", b.astype(np.float32))])

    def layer_norm(self, x: str, g: np.ndarray, b: np.ndarray, name: str) -> str:
        return self.node("LayerNormalization", [x, self.const(name + ".gamma", g), self.const(name + ".beta", b)],
                         axis=-1, epsilon=_LN_EPS)

    def gelu(self, x: str) -> str:  # exact (erf) GELU; onnxruntime fuses this pattern into Gelu
        e = self.node("Erf", [self.node("Div", [x, "sqrt2"])])
        return self.node("Mul", [self.node("Mul", [x, "half"]), self.node("Add", [e, "one"])])

    def model(self, name: str, inputs: list[Any], outputs: list[Any], meta: dict[str, str] | None = None,
              opset: int = 17) -> Any:
        onnx: Any = require("onnx", "train")
        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", opset)],
                                       producer_name="vocalis")
        model.ir_version = 8
        if meta:
            self.helper.set_model_props(model, meta)
        onnx.checker.check_model(model)
        return model


def build_onnx(weights: EncoderWeights, opset: int = 17) -> Any:
    """The encoder as an ``onnx.ModelProto``: ``mel`` [1, n_mels, T] -> ``hidden`` [L + 1, T/2, d]."""
    from onnx import TensorProto

    g = GraphWriter()
    const, node, linear, layer_norm, gelu = g.const, g.node, g.linear, g.layer_norm, g.gelu
    d, h = weights.d_model, weights.num_heads
    dh = d // h
    x = node("Conv", ["mel", const("conv1.weight", weights.conv1_w), const("conv1.bias", weights.conv1_b)],
             kernel_shape=[3], pads=[1, 1], strides=[1])
    x = gelu(x)
    x = node("Conv", [x, const("conv2.weight", weights.conv2_w), const("conv2.bias", weights.conv2_b)],
             kernel_shape=[3], pads=[1, 1], strides=[2])
    x = gelu(x)
    x = node("Transpose", [node("Squeeze", [x, const("axes0", np.array([0], np.int64))])], perm=[1, 0])  # [T2, d]
    t2 = node("Slice", [node("Shape", [x]), const("i0", np.array([0], np.int64)), const("i1", np.array([1], np.int64))])
    pos = node("Slice", [const("positions", weights.positions), const("z0", np.array([0], np.int64)), t2,
                         const("ax0", np.array([0], np.int64))])
    x = node("Add", [x, pos])
    hidden = [x]
    qkv_shape = const("qkv_shape", np.array([-1, 3, h, dh], np.int64))
    merge_shape = const("merge_shape", np.array([-1, d], np.int64))
    scale = 1.0 / np.sqrt(dh)
    for i, b in enumerate(weights.blocks):
        p = f"layer_{i}"
        # fold the attention scale into the query projection (exact for dh = 64: scale = 1/8)
        qkv_w = b["qkv_w"].copy()
        qkv_b = b["qkv_b"].copy()
        qkv_w[:d] *= scale
        qkv_b[:d] *= scale
        y = layer_norm(x, b["ln1_g"], b["ln1_b"], p + ".ln1")
        qkv = node("Transpose", [node("Reshape", [linear(y, qkv_w, qkv_b, p + ".qkv"), qkv_shape])],
                   perm=[1, 2, 0, 3])  # [3, h, T2, dh]
        q, k, v = (node("Gather", [qkv, const(f"{p}.idx{j}", np.array(j, np.int64))], axis=0) for j in range(3))
        att = node("Softmax", [node("MatMul", [q, node("Transpose", [k], perm=[0, 2, 1])])], axis=-1)
        a = node("Reshape", [node("Transpose", [node("MatMul", [att, v])], perm=[1, 0, 2]), merge_shape])
        x = node("Add", [x, linear(a, b["out_w"], b["out_b"], p + ".out")])
        y = layer_norm(x, b["ln2_g"], b["ln2_b"], p + ".ln2")
        y = linear(gelu(linear(y, b["fc1_w"], b["fc1_b"], p + ".fc1")), b["fc2_w"], b["fc2_b"], p + ".fc2")
        x = node("Add", [x, y])
        if i == weights.n_layers - 1:
            x = layer_norm(x, weights.ln_post_g, weights.ln_post_b, "ln_post")
        hidden.append(x)
    node("Concat", [node("Unsqueeze", [s, "axes0"]) for s in hidden], out="hidden", axis=0)
    vi = g.helper.make_tensor_value_info
    return g.model("whisper_encoder_layers", [vi("mel", TensorProto.FLOAT, [1, weights.n_mels, "frames"])],
                   [vi("hidden", TensorProto.FLOAT, [weights.n_layers + 1, "steps", d])], opset=opset)


def backbone_dir() -> Path:
    """Where built encoder graphs are cached (``$VOCALIS_CACHE_DIR/backbones``)."""
    root = Path(os.environ.get("VOCALIS_CACHE_DIR", Path.home() / ".cache" / "vocalis")).expanduser()
    return root / "backbones"


def _cache_key(model_bin: Path) -> str:
    st = model_bin.stat()
    blob = f"{model_bin.resolve()}|{st.st_size}|{st.st_mtime_ns}|v{GRAPH_VERSION}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def ensure_onnx(model_dir: Path, quantized: bool = False) -> Path:
    """Path of the cached ONNX encoder of a CTranslate2 Whisper directory, building it if missing."""
    with _build_lock:
        return _ensure_onnx(model_dir, quantized)


def _ensure_onnx(model_dir: Path, quantized: bool) -> Path:
    model_bin = model_dir / "model.bin"
    key = _cache_key(model_bin)
    fp32 = backbone_dir() / f"{key}.onnx"
    if not fp32.is_file():
        model = build_onnx(encoder_weights(read_model_bin(model_bin)))
        _atomic_write(fp32, model.SerializeToString())
    if not quantized:
        return fp32
    int8 = backbone_dir() / f"{key}.int8.onnx"
    if not int8.is_file():
        quantize_weights(fp32, int8)
    return int8


def quantize_weights(src: Path, dst: Path) -> None:
    """Write ``src`` with int8 weight products to ``dst`` (used for the encoder and the decoder).

    Only the weight MatMuls; attention products and the convolutions stay float. Per-channel 7-bit
    weights (reduce_range) were both the closest to float32 (last-layer cosine 0.991 vs 0.975
    per-tensor 8-bit on a harmonic test signal) and the fastest on an AVX2 CPU.
    """
    require("onnx", "train")
    import shutil
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic writes scratch files next to its input: work on a private copy
    with tempfile.TemporaryDirectory(dir=backbone_dir()) as work, _quiet_root_logger():
        a, b = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        shutil.copyfile(src, a)
        quantize_dynamic(a, b, weight_type=QuantType.QInt8, nodes_to_quantize=_weight_matmuls(a),
                         op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=True)
        b.replace(dst)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer calls ``logging.warning()`` ("Please consider to run pre-processing"):
    on an unconfigured root logger that runs ``basicConfig()`` (a stderr handler for the rest of the
    process) and prints. The library never prints: drop its root-logger records while it runs."""
    import logging

    root = logging.getLogger()
    guard = logging.NullHandler()  # root has a handler: logging.warning() skips basicConfig()

    def only_others(record: logging.LogRecord) -> bool:
        return record.name != "root"

    root.addHandler(guard)
    root.addFilter(only_others)
    try:
        yield
    finally:
        root.removeFilter(only_others)
        root.removeHandler(guard)


def _weight_matmuls(path: Path) -> list[str]:
    onnx: Any = require("onnx", "train")
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    return [n.name for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def _session(path: Path, threads: int, what: str = "encoder") -> Any:
    """One cached onnxruntime session per graph file and thread count (``what`` names it in errors)."""
    key = (str(path), threads)
    with _lock:
        if key not in _sessions:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                _sessions[key] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise ModelError(f"ONNX Whisper {what} at {path} could not be loaded: {e}") from e
        return _sessions[key]


# ---------------------------------------------------------------------------------------------
# Extractor


@register
@dataclass(frozen=True)
class WhisperLayers:
    """Pooled hidden states of chosen Whisper-encoder layers, concatenated or averaged.

    ``layers`` indexes the ``L + 1`` hidden states (0 = after the positional embedding, ``L`` or
    ``-1`` = the last layer after the final layer norm); empty means all. ``pooling="mean_std"``
    gives ``2 * d_model`` values per layer (768 for tiny). ``combine="concat"`` concatenates the
    per-layer vectors; ``"mean"`` averages them (one ``2 * d_model`` vector).

    ``frames`` chooses the time steps that are pooled: ``"all"``, or ``"voiced"``: only the steps
    whose 20 ms of audio (the samples ``[320 j, 320 (j + 1))`` at 16 kHz for step ``j``) are
    louder than both ``voiced_db`` dB below the clip's loudest step and ``floor_db`` dB above its
    noise floor (the 10th percentile of the steps' power). The silences before, between and after
    words are left out of the mean and std (in acted corpora about half of every clip is silence,
    which dilutes the mean and inflates the std).
    The noise-floor bound matters on noisy audio: at 20 dB SNR the noise alone lies within 35 dB
    of the loudest step, and a peak-relative rule alone would keep every step. That bound never
    rises above ``floor_db`` dB below the loudest step, so a clip without pauses (a held vowel,
    steady noise) keeps the steps within that range instead of only its loudest one. The loudest
    step is always kept, so the vector is defined for any clip, even silence.

    ``span`` chooses what the encoder sees: ``"clip"``, the whole clip, or ``"voiced"`` (only with
    ``frames="voiced"``): the stretch from the first to the last voiced step, widened by
    ``span_margin`` seconds on each side. Leading and trailing silence then costs nothing (the
    encoder's cost grows with its input length; RAVDESS clips are about half silence), while the
    pauses between words stay in the encoder's context. The voiced steps are chosen on the whole
    clip first, so both spans pool the same steps.
    """

    kind: ClassVar[str] = "whisper_layers"
    output: ClassVar[str] = "vector"

    model: str = "tiny.en"
    layers: tuple[int, ...] = field(default_factory=tuple)
    pooling: str = "mean_std"
    combine: str = "concat"
    quantized: bool = False
    threads: int = 1
    frames: str = "all"
    voiced_db: float = 35.0
    floor_db: float = 6.0
    span: str = "clip"
    span_margin: float = 0.25

    def __post_init__(self) -> None:
        try:
            layers = tuple(int(v) for v in self.layers)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"whisper_layers layers={self.layers!r} must be a list of integers") from e
        object.__setattr__(self, "layers", layers)
        if len(set(layers)) != len(layers):
            raise ConfigError(f"whisper_layers layers={list(layers)} must not repeat a layer")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"whisper_layers pooling={self.pooling!r} must be one of {POOLINGS}")
        if self.combine not in COMBINES:
            raise ConfigError(f"whisper_layers combine={self.combine!r} must be one of {COMBINES}")
        if not isinstance(self.quantized, bool):
            raise ConfigError(f"whisper_layers quantized={self.quantized!r} must be true or false")
        if self.threads < 1:
            raise ConfigError(f"whisper_layers threads={self.threads} must be at least 1")
        if self.frames not in FRAMES:
            raise ConfigError(f"whisper_layers frames={self.frames!r} must be one of {FRAMES}")
        for name in ("voiced_db", "floor_db"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 200:
                raise ConfigError(f"whisper_layers {name}={v!r} must be a number in [0, 200]")
            object.__setattr__(self, name, float(v))
        if self.span not in SPANS:
            raise ConfigError(f"whisper_layers span={self.span!r} must be one of {SPANS}")
        if self.span == "voiced" and self.frames != "voiced":
            raise ConfigError('whisper_layers span="voiced" needs frames="voiced" (it trims to the voiced steps)')
        m = self.span_margin
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m <= 30:
            raise ConfigError(f"whisper_layers span_margin={m!r} must be a number of seconds in [0, 30]")
        object.__setattr__(self, "span_margin", float(m))

    def get_config(self) -> dict[str, Any]:
        cfg = dataclass_config(self)
        if (self.frames, self.voiced_db, self.floor_db) == ("all", 35.0, 6.0):
            # configs written before ``frames`` existed stay byte-identical (bundle manifests, cache keys)
            del cfg["frames"], cfg["voiced_db"], cfg["floor_db"]
        if (self.span, self.span_margin) == ("clip", 0.25):
            del cfg["span"], cfg["span_margin"]  # the same for configs written before ``span`` existed
        return cfg

    def fingerprint(self) -> str:
        """The weights behind :attr:`model` and the graph version built from them, for feature caches."""
        from vocalis.features.whisper import weights_fingerprint

        return f"{weights_fingerprint(self.model)}|graph-v{GRAPH_VERSION}"

    def _session(self) -> Any:
        key = (self.model, self.quantized, os.environ.get("VOCALIS_CACHE_DIR", ""))
        path = _graphs.get(key)
        if path is not None and (sess := _sessions.get((str(path), self.threads))) is not None:
            return sess  # loaded: the graph file is not read again (a stat per call was ~2 % of a live server)
        if path is None or not path.is_file():
            from vocalis.features.whisper import resolve_model_path

            path = _graphs[key] = ensure_onnx(resolve_model_path(self.model), self.quantized)
        return _session(path, self.threads)

    def layer_indices(self, n_hidden: int) -> list[int]:
        """The chosen hidden-state indices for a model with ``n_hidden`` (= L + 1) states."""
        if not self.layers:
            return list(range(n_hidden))
        out = []
        for i in self.layers:
            j = i + n_hidden if i < 0 else i
            if not 0 <= j < n_hidden:
                raise ConfigError(f"whisper_layers layers={list(self.layers)}: {i} is outside 0..{n_hidden - 1}")
            out.append(j)
        if len(set(out)) != len(out):
            raise ConfigError(f"whisper_layers layers={list(self.layers)} name the same layer twice")
        return out

    def hidden_states(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """All hidden states ``[L + 1, T / 2, d_model]`` of the clip (30 s chunks joined in time)."""
        sess = self._session()
        n_mels = int(sess.get_inputs()[0].shape[1])
        x = resample(audio, sample_rate, SAMPLE_RATE)
        return self._hidden_16k(sess, n_mels, x)

    def _hidden_16k(self, sess: Any, n_mels: int, x: np.ndarray) -> np.ndarray:
        mel = LogMel(n_mels=n_mels, scale="whisper")(x)
        outs = []
        for start in range(0, mel.shape[1], _MAX_FRAMES):
            chunk = mel[:, start : start + _MAX_FRAMES]
            t = max(_MIN_FRAMES, chunk.shape[1] + chunk.shape[1] % 2)
            if t != chunk.shape[1]:
                chunk = np.pad(chunk, ((0, 0), (0, t - chunk.shape[1])), constant_values=float(mel.min()))
            feed = {"mel": np.ascontiguousarray(chunk[None], dtype=np.float32)}
            outs.append(sess.run(["hidden"], feed)[0])
        return np.concatenate(outs, axis=1)

    def voiced_steps(self, audio_16k: np.ndarray, n_steps: int) -> np.ndarray:
        """Boolean mask of the ``n_steps`` encoder steps that count as voiced (see the class docstring).

        >>> x = np.zeros(3200, np.float32); x[640:1280] = 0.5; x[1280:1600] = 0.001
        >>> WhisperLayers(frames="voiced").voiced_steps(x, 10).nonzero()[0].tolist()
        [2, 3]
        >>> noisy = x + np.random.default_rng(0).normal(0, 0.03, 3200).astype(np.float32)  # ~20 dB SNR
        >>> WhisperLayers(frames="voiced").voiced_steps(noisy, 10).nonzero()[0].tolist()
        [2, 3]
        """
        x = np.asarray(audio_16k, dtype=np.float64)
        n = min(n_steps, -(-len(x) // _STEP))
        padded = np.zeros(n * _STEP)
        padded[: min(len(x), n * _STEP)] = x[: n * _STEP]
        power = np.zeros(n_steps)
        power[:n] = np.mean(padded.reshape(n, _STEP) ** 2, axis=1)
        db = 10 * np.log10(power + 1e-12)
        peak = float(db.max())
        floor_bound = min(float(np.percentile(db, 10)) + self.floor_db, peak - self.floor_db)
        return np.asarray(db >= max(peak - self.voiced_db, floor_bound))

    def pool(self, hidden: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Pool ``[L + 1, T, d]`` hidden states (the steps in ``mask`` only, if given) into this extractor's vector."""
        h = hidden[self.layer_indices(hidden.shape[0])].astype(np.float64)
        if mask is not None:
            h = h[:, np.asarray(mask, bool)]
        per_layer = h.mean(axis=1) if self.pooling == "mean" else np.concatenate([h.mean(axis=1), h.std(axis=1)], -1)
        vec = per_layer.reshape(-1) if self.combine == "concat" else per_layer.mean(axis=0)
        return vec.astype(np.float32)

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        if self.frames == "all":
            return self.pool(self.hidden_states(audio, sample_rate))
        x = resample(audio, sample_rate, SAMPLE_RATE)
        sess = self._session()
        n_mels = int(sess.get_inputs()[0].shape[1])
        if self.span == "clip":
            hidden = self._hidden_16k(sess, n_mels, x)
            return self.pool(hidden, self.voiced_steps(x, hidden.shape[1]))
        voiced = self.voiced_steps(x, -(-len(x) // _STEP))
        first, last = self._span(voiced)
        hidden = self._hidden_16k(sess, n_mels, x[first * _STEP : last * _STEP])
        mask = np.zeros(hidden.shape[1], bool)
        voiced = voiced[first:last]
        mask[: min(len(voiced), len(mask))] = voiced[: len(mask)]
        if not mask.any():  # cannot happen (the loudest step is inside the span); keep pool() defined
            mask[0] = True
        return self.pool(hidden, mask)

    def voiced_span(self, audio_16k: np.ndarray) -> tuple[int, int]:
        """``(first, last)`` encoder steps (end exclusive) that ``span="voiced"`` keeps.

        >>> x = np.zeros(16000, np.float32); x[4800:6400] = 0.5   # voiced from 0.3 s to 0.4 s
        >>> WhisperLayers(frames="voiced", span="voiced", span_margin=0.1).voiced_span(x)
        (10, 25)
        """
        return self._span(self.voiced_steps(audio_16k, -(-len(audio_16k) // _STEP)))

    def _span(self, voiced: np.ndarray) -> tuple[int, int]:
        """The span of a clip's voiced-step mask (all its steps), widened by ``span_margin``."""
        idx = np.flatnonzero(voiced)
        margin = round(self.span_margin * SAMPLE_RATE / _STEP)
        return max(0, int(idx[0]) - margin), min(len(voiced), int(idx[-1]) + 1 + margin)
