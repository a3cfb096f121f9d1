"""PyTorch classifiers: learning, early stopping, inner split, determinism, ONNX export.

Synthetic data only: log-mel-like frames whose class raises the energy of one band region,
and feature vectors with class-dependent means.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("sklearn")

from vocalis.errors import ConfigError, DataError, ModelError  # noqa: E402
from vocalis.models.torch_nets import (  # noqa: E402
    CNN1DClassifier,
    CNN2DClassifier,
    CRNNClassifier,
    TorchClassifier,
    inner_validation_split,
)

N_MELS = 24


def make_frames(n: int, seed: int, n_mels: int = N_MELS) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """3 classes: +4 dB in mel bands 0-5, 8-13 or 16-21; dB-like offset; 80-200 frames."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        k = i % 3
        x = rng.normal(-40.0, 2.0, size=(n_mels, int(rng.integers(80, 201))))
        x[8 * k : 8 * k + 6] += 4.0
        X.append(x.astype(np.float32))
        y.append(k)
    groups = np.arange(n) // 6  # "speakers" of 6 clips, 2 per class
    return X, np.array(y), groups


def make_vectors(n: int, seed: int, dim: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.random.default_rng(99).normal(0.0, 1.0, size=(3, dim))
    X = 50.0 + 10.0 * (centres[y] + rng.normal(0.0, 0.7, size=(n, dim)))  # raw, unstandardised scale
    return X.astype(np.float32), y


FRAME_KW: dict[str, Any] = {"epochs": 4, "crop_frames": 64, "batch_size": 16, "patience": 10}


@pytest.fixture(scope="module")
def frame_data() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    return make_frames(72, seed=0)


@pytest.fixture(scope="module")
def frame_test() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    return make_frames(30, seed=1)


@pytest.fixture(scope="module")
def fitted_frame_models(frame_data: Any) -> dict[str, TorchClassifier]:
    X, y, g = frame_data
    return {
        "cnn2d": CNN2DClassifier(**FRAME_KW).fit(X, y, groups=g),
        "crnn": CRNNClassifier(**FRAME_KW, rnn_hidden=32).fit(X, y, groups=g),
        "crnn_lstm_mean": CRNNClassifier(
            **FRAME_KW, rnn="lstm", pooling="mean", rnn_hidden=32, mixup=0.2
        ).fit(X, y, groups=g),
    }


@pytest.fixture(scope="module")
def fitted_cnn1d() -> CNN1DClassifier:
    X, y = make_vectors(150, seed=0)
    return CNN1DClassifier(epochs=15, patience=20).fit(X, y)


# ---------------------------------------------------------------------- inner split


def test_inner_split_is_speaker_disjoint() -> None:
    y = np.arange(60) % 3
    groups = np.repeat([f"spk{i}" for i in range(10)], 6)
    for seed in range(5):
        tr, va = inner_validation_split(y, groups, val_fraction=0.2, seed=seed)
        assert len(va) > 0 and len(tr) > 0
        assert set(groups[tr]).isdisjoint(groups[va])
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(60))


def test_inner_split_stratified_without_groups_and_disabled() -> None:
    y = np.repeat([0, 1, 2], 20)
    tr, va = inner_validation_split(y, None, val_fraction=0.15, seed=0)
    assert set(y[va]) == {0, 1, 2}
    assert len(np.intersect1d(tr, va)) == 0
    tr, va = inner_validation_split(y, None, val_fraction=0.0)
    assert len(va) == 0 and len(tr) == 60
    with pytest.raises(ConfigError):
        inner_validation_split(y, None, val_fraction=1.0)


def test_fit_uses_group_split(frame_data: Any, fitted_frame_models: dict[str, TorchClassifier]) -> None:
    assert all(m.val_split_ == "group" for m in fitted_frame_models.values())


# ---------------------------------------------------------------------- learning


@pytest.mark.parametrize("name", ["cnn2d", "crnn", "crnn_lstm_mean"])
def test_frame_models_learn(name: str, fitted_frame_models: Any, frame_test: Any) -> None:
    model = fitted_frame_models[name]
    X, y, _ = frame_test
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (model.predict(X) == y).mean() > 0.9
    assert model.classes_.tolist() == [0, 1, 2]
    h = model.history_
    assert [e["epoch"] for e in h] == list(range(1, len(h) + 1))
    assert set(h[0]) == {"epoch", "train_loss", "val_loss", "val_acc", "lr"}


def test_cnn1d_learns_vectors(fitted_cnn1d: CNN1DClassifier) -> None:
    X, y = make_vectors(90, seed=1)
    proba = fitted_cnn1d.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (fitted_cnn1d.predict(X) == y).mean() > 0.9


def test_string_labels_and_short_clips(frame_data: Any) -> None:
    X, y, _ = frame_data
    names = np.array(["angry", "happy", "sad"])[y]
    model = CRNNClassifier(epochs=1, crop_frames=32, rnn_hidden=16, spec_augment=False).fit(X, names)
    assert model.classes_.tolist() == ["angry", "happy", "sad"]
    short = [X[0][:, :2], X[1][:, :9]]  # below min_frames: tiled inside predict
    assert set(model.predict(short)) <= set(names)


# ---------------------------------------------------------------------- early stopping


def test_early_stopping_stops_and_restores_best_weights() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 16)).astype(np.float32)
    y = rng.integers(0, 3, size=120)  # labels are noise: validation loss cannot keep improving
    model = CNN1DClassifier(epochs=60, patience=3, lr=3e-3, seed=0).fit(X, y)
    h = model.history_
    assert model.n_epochs_ < 60
    assert model.n_epochs_ == model.best_epoch_ + 3
    best = min(e["val_loss"] for e in h)
    assert h[model.best_epoch_ - 1]["val_loss"] == best
    # the restored weights reproduce the best epoch's validation loss
    _, va = inner_validation_split(y, None, model.val_fraction, model.seed)
    proba = model.predict_proba(X[va])
    val_loss = float(-np.log(proba[np.arange(len(va)), y[va]]).mean())
    assert val_loss == pytest.approx(best, rel=1e-4)
    assert h[-1]["lr"] <= h[0]["lr"]


def test_progress_callback_and_no_validation() -> None:
    X, y = make_vectors(40, seed=0)
    calls: list[tuple[int, int]] = []
    model = CNN1DClassifier(epochs=3, val_fraction=0.0, progress=lambda e, n: calls.append((e, n)))
    model.fit(X, y)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert model.history_[-1]["val_loss"] is None and model.val_split_ == "none"


# ---------------------------------------------------------------------- determinism


def test_same_seed_same_probabilities(frame_data: Any, frame_test: Any) -> None:
    X, y, g = frame_data
    Xt = frame_test[0][:8]
    kw = {"epochs": 2, "crop_frames": 48, "rnn_hidden": 16, "mixup": 0.3}
    p1 = CRNNClassifier(**kw, seed=3).fit(X, y, groups=g).predict_proba(Xt)
    p2 = CRNNClassifier(**kw, seed=3).fit(X, y, groups=g).predict_proba(Xt)
    p3 = CRNNClassifier(**kw, seed=4).fit(X, y, groups=g).predict_proba(Xt)
    assert np.array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_fit_leaves_global_torch_state_alone() -> None:
    X, y = make_vectors(30, seed=0)
    threads = torch.get_num_threads()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    CNN1DClassifier(epochs=1, threads=1).fit(X, y)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


# ---------------------------------------------------------------------- ONNX


def _session(model: TorchClassifier) -> Any:
    return ort.InferenceSession(model.to_onnx(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["cnn2d", "crnn", "crnn_lstm_mean"])
def test_onnx_matches_torch_for_two_lengths(name: str, fitted_frame_models: Any, frame_test: Any) -> None:
    model = fitted_frame_models[name]
    sess = _session(model)
    assert [i.name for i in sess.get_inputs()] == ["features"]
    assert [o.name for o in sess.get_outputs()] == ["probabilities"]
    X = frame_test[0]
    for length, batch in ((37, 3), (181, 1)):
        clips = [x[:, :length] if x.shape[1] >= length else np.tile(x, (1, 2))[:, :length] for x in X[:batch]]
        raw = np.stack(clips).astype(np.float32)
        onnx_proba = sess.run(None, {"features": raw})[0]
        np.testing.assert_allclose(onnx_proba, model.predict_proba(clips), atol=1e-4)
        np.testing.assert_allclose(onnx_proba.sum(axis=1), 1.0, atol=1e-5)


def test_onnx_graph_contains_standardisation(fitted_frame_models: Any, fitted_cnn1d: CNN1DClassifier) -> None:
    import onnx
    from onnx import numpy_helper

    for model in (fitted_frame_models["cnn2d"], fitted_cnn1d):
        graph = onnx.load_from_string(model.to_onnx())
        consts = [numpy_helper.to_array(t) for t in graph.graph.initializer]
        consts += [
            numpy_helper.to_array(a.t)
            for node in graph.graph.node
            if node.op_type == "Constant"
            for a in node.attribute
            if a.name == "value"
        ]
        assert any(c.size == model.mean_.size and np.allclose(c.ravel(), model.mean_) for c in consts)
        meta = {p.key: p.value for p in graph.metadata_props}
        assert meta["classes"] == "[0, 1, 2]"


def test_onnx_cnn1d_takes_raw_vectors(fitted_cnn1d: CNN1DClassifier) -> None:
    X, _ = make_vectors(10, seed=2)
    sess = _session(fitted_cnn1d)
    raw_out = sess.run(None, {"features": X})[0]
    np.testing.assert_allclose(raw_out, fitted_cnn1d.predict_proba(X), atol=1e-4)
    # pre-standardised input is *not* what the graph expects: it standardises itself
    pre = ((X - fitted_cnn1d.mean_) / fitted_cnn1d.std_).astype(np.float32)
    assert not np.allclose(sess.run(None, {"features": pre})[0], raw_out, atol=1e-3)


# ---------------------------------------------------------------------- protocol & errors


def test_sklearn_protocol_and_pickle(fitted_cnn1d: CNN1DClassifier) -> None:
    from sklearn.base import clone

    est = CRNNClassifier(epochs=7, rnn="lstm")
    assert est.get_params()["epochs"] == 7 and est.get_params()["crop_frames"] == 300
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")
    assert "epochs=7" in repr(est)
    X, _ = make_vectors(5, seed=3)
    restored = pickle.loads(pickle.dumps(fitted_cnn1d))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted_cnn1d.predict_proba(X))


def test_errors(frame_data: Any) -> None:
    X, y, _ = frame_data
    with pytest.raises(ModelError):
        CNN2DClassifier().predict_proba(X)
    with pytest.raises(ConfigError, match="rnn="):
        CRNNClassifier(rnn="transformer").fit(X, y)
    with pytest.raises(ConfigError, match="crop_frames"):
        CNN2DClassifier(crop_frames=8).fit(X, y)
    with pytest.raises(DataError, match="classes"):
        CNN1DClassifier().fit(np.zeros((4, 3)), [1, 1, 1, 1])
    bad = [x.copy() for x in X[:6]]
    bad[2][0, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        CNN2DClassifier(epochs=1).fit(bad, y[:6])
    with pytest.raises(DataError, match="channels"):
        CNN2DClassifier(epochs=1).fit([X[0], X[1][:10]], [0, 1])


def test_import_without_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # make "import torch" fail
        import numpy as np
        from vocalis.errors import DependencyError
        from vocalis.models.torch_nets import CNN1DClassifier
        try:
            CNN1DClassifier().fit(np.zeros((4, 3)), [0, 1, 0, 1])
        except DependencyError as e:
            assert "vocalis[torch]" in str(e), e
        else:
            raise SystemExit("expected DependencyError")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
