"""Scores with their definitions: WA (accuracy), UA (mean per-class recall), macro-F1, confusion."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Rows = true label, columns = predicted label, in ``labels`` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            m[index[t], index[p]] += 1
    return m


def scores(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """``{"n", "wa", "ua", "macro_f1", "labels", "confusion", "per_class"}``.

    ``labels`` defaults to the labels present in ``y_true``; UA and macro-F1 average over those.

    >>> s = scores(["a", "a", "b", "b"], ["a", "a", "a", "b"])
    >>> s["wa"], s["ua"]
    (0.75, 0.75)
    """
    yt = list(y_true)
    yp = list(y_pred)
    labs = list(labels) if labels is not None else sorted(set(yt))
    m = confusion(yt, yp, labs)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    tp = np.diag(m).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    n = len(yt)
    wa = float(sum(t == p for t, p in zip(yt, yp)) / n) if n else 0.0
    return {
        "n": n,
        "wa": round(wa, 4),
        "ua": round(float(recall[present].mean()) if present.any() else 0.0, 4),
        "macro_f1": round(float(f1[present].mean()) if present.any() else 0.0, 4),
        "labels": labs,
        "confusion": m.tolist(),
        "per_class": {
            lab: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                  "f1": round(float(f1[i]), 4), "support": int(support[i])}
            for i, lab in enumerate(labs)
        },
    }


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence (``y`` are integer class indices)."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return round(float(ece), 4)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """Temperature ``T`` minimising the NLL of ``softmax(log p / T)`` (held-out predictions only)."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(proba, 1e-12, 1.0))

    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float(-(z[np.arange(len(y)), y] - lse).mean())

    res = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded")
    return round(float(res.x), 4)


def plot_confusion(result: dict[str, Any], path: str, title: str = "") -> None:
    """Write the confusion matrix (row-normalised, with counts) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(result["confusion"], dtype=float)
    labels = result["labels"]
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title or f"WA {result['wa']:.3f}  UA {result['ua']:.3f}  (n={result['n']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
