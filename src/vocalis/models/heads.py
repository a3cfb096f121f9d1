"""scikit-learn heads (scaler inside the Pipeline) and their ONNX export."""

from __future__ import annotations

from typing import Any

import numpy as np

from vocalis.bundle.manifest import INPUT_NAME, OUTPUT_NAME
from vocalis.errors import ConfigError, ModelError, require

SKLEARN_HEADS = ("logreg", "svm", "mlp")


def make_sklearn_head(head: str, params: dict[str, Any], seed: int = 0) -> Any:
    """``Pipeline([StandardScaler, classifier])`` for ``head`` in :data:`SKLEARN_HEADS`."""
    require("sklearn", "train")
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    p = dict(params)
    clf: Any
    if head == "logreg":
        clf = LogisticRegression(C=p.pop("C", 1.0), max_iter=p.pop("max_iter", 3000),
                                 class_weight=p.pop("class_weight", "balanced"), random_state=seed, **p)
    elif head == "svm":
        clf = SVC(C=p.pop("C", 10.0), kernel=p.pop("kernel", "rbf"), gamma=p.pop("gamma", "scale"),
                  probability=True, class_weight=p.pop("class_weight", "balanced"), random_state=seed, **p)
    elif head == "mlp":
        hidden = tuple(p.pop("hidden_layer_sizes", (200, 200, 100, 50)))
        clf = MLPClassifier(hidden_layer_sizes=hidden, alpha=p.pop("alpha", 0.01),
                            batch_size=p.pop("batch_size", 256), learning_rate=p.pop("learning_rate", "adaptive"),
                            max_iter=p.pop("max_iter", 500), early_stopping=p.pop("early_stopping", True),
                            random_state=seed, **p)
    else:
        raise ConfigError(f"head={head!r} must be one of {SKLEARN_HEADS}")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def sklearn_to_onnx(pipeline: Any, n_features: int) -> bytes:
    """Export a fitted Pipeline to ONNX: input ``features`` [N, D] -> output ``probabilities`` [N, K]."""
    require("skl2onnx", "train")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    clf = pipeline.steps[-1][1]
    try:
        model = to_onnx(
            pipeline,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            options={id(clf): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    except Exception as e:
        raise ModelError(f"cannot export {type(clf).__name__} to ONNX: {e}") from e
    names = [o.name for o in model.graph.output]
    if OUTPUT_NAME not in names:
        raise ModelError(f"exported graph outputs {names} lack {OUTPUT_NAME!r}")
    # keep only the probabilities output
    for o in list(model.graph.output):
        if o.name != OUTPUT_NAME:
            model.graph.output.remove(o)
    return bytes(model.SerializeToString())


def full_proba(estimator: Any, X: Any, n_classes: int) -> np.ndarray:
    """``predict_proba`` spread over all ``n_classes`` columns (a class absent in training gets 0)."""
    p = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    classes = np.asarray(getattr(estimator, "classes_", np.arange(p.shape[1])))
    if p.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return p
    out = np.zeros((p.shape[0], n_classes))
    out[:, classes.astype(int)] = p
    return out
