"""Recipes: a feature extractor config + a head (+ optional training-fold augmentation).

``vocalis cv``/``train`` use :data:`DEFAULT_RECIPE` unless told otherwise. Every recipe
exports to the same bundle format; heads are scikit-learn pipelines (scaler inside) or
PyTorch nets (the ``torch`` extra) exported to ONNX.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vocalis.augment import AugmentConfig
from vocalis.errors import ConfigError
from vocalis.features.base import FeatureExtractor, from_config
from vocalis.models.heads import SKLEARN_HEADS, make_sklearn_head, sklearn_to_onnx

TORCH_HEADS = ("cnn1d", "cnn2d", "crnn")


def _classic_recipe_features() -> dict[str, Any]:
    from vocalis.features.classic import ClassicFeatures

    return ClassicFeatures.recipe().get_config()


CLASSIC_RECIPE_FEATURES = _classic_recipe_features()


@dataclass(frozen=True)
class Recipe:
    name: str
    features: dict[str, Any]
    head: str
    params: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] | None = None
    description: str = ""

    def extractor(self) -> FeatureExtractor:
        return from_config(copy.deepcopy(self.features))

    def estimator(self, seed: int = 0) -> Any:
        if self.head in SKLEARN_HEADS:
            return make_sklearn_head(self.head, self.params, seed)
        if self.head in TORCH_HEADS:
            from vocalis.models import torch_nets

            cls = {"cnn1d": torch_nets.CNN1DClassifier, "cnn2d": torch_nets.CNN2DClassifier,
                   "crnn": torch_nets.CRNNClassifier}[self.head]
            return cls(seed=seed, **self.params)
        raise ConfigError(f"head={self.head!r} must be one of {SKLEARN_HEADS + TORCH_HEADS}")

    def with_backbone(self, model: str) -> Recipe:
        """Swap the Whisper model (size name or CTranslate2 directory) in this recipe's features."""

        def swap(cfg: dict[str, Any]) -> tuple[dict[str, Any], bool]:
            cfg = dict(cfg)
            if cfg.get("type") in ("whisper", "whisper_layers"):
                cfg["model"] = model
                return cfg, True
            if cfg.get("type") == "concat":
                parts, hits = zip(*(swap(p) for p in cfg["parts"]))
                cfg["parts"] = list(parts)
                return cfg, any(hits)
            return cfg, False

        feats, hit = swap(self.features)
        if not hit:
            raise ConfigError(f"backbone={model!r} given, but recipe={self.name!r} has no Whisper backbone")
        return replace(self, features=feats)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "features": self.features, "head": self.head, "params": self.params,
                "augment": self.augment, "description": self.description}


def fit_estimator(est: Any, X: Any, y: np.ndarray, groups: np.ndarray | None = None) -> Any:
    """Fit a head; torch heads also get the speaker ``groups`` for their inner validation split."""
    if groups is not None and "groups" in inspect.signature(est.fit).parameters:
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


def stack_inputs(feats: list[np.ndarray], input_kind: str) -> Any:
    """Vectors become one ``(N, D)`` array; frame matrices stay a list (variable length)."""
    return np.stack(feats) if input_kind == "vector" else feats


def export_onnx(recipe: Recipe, est: Any, n_features: int | None) -> bytes:
    if recipe.head in SKLEARN_HEADS:
        assert n_features is not None
        return sklearn_to_onnx(est, n_features)
    return bytes(est.to_onnx())


_W = {"type": "whisper", "model": "tiny.en", "pooling": "mean_std", "compute_type": "int8", "threads": 1}
_WL = {"type": "whisper_layers", "model": "tiny.en", "layers": [], "pooling": "mean_std", "combine": "concat",
       "quantized": True, "threads": 1}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("whisper-layers-logreg", _WL, "logreg", {"C": 0.01},
               description="Whisper tiny.en encoder, all 5 hidden states (mean+std each, int8 ONNX Runtime), "
                           "logistic regression"),
        Recipe("whisper-voiced-logreg", {**_WL, "frames": "voiced", "voiced_db": 35.0, "floor_db": 6.0}, "logreg",
               {"C": 0.01},
               description="Whisper tiny.en encoder, all 5 hidden states (int8 ONNX Runtime), mean+std over the "
                           "voiced steps only (within 35 dB of the loudest, 6 dB above the noise floor), "
                           "logistic regression"),
        Recipe("whisper-voiced-aug-logreg", {**_WL, "frames": "voiced", "voiced_db": 35.0, "floor_db": 6.0}, "logreg",
               {"C": 0.01}, augment=AugmentConfig(copies=2).to_dict(),
               description="whisper-voiced-logreg trained with 2 augmented copies of every training clip "
                           "(noise 10-30 dB SNR, tempo, pitch, shift, gain; test folds never augmented)"),
        Recipe("whisper-span-aug-logreg",
               {**_WL, "frames": "voiced", "voiced_db": 35.0, "floor_db": 6.0, "span": "voiced", "span_margin": 0.25},
               "logreg", {"C": 0.01}, augment=AugmentConfig(copies=2).to_dict(),
               description="whisper-voiced-aug-logreg with the encoder run only from 0.25 s before the first "
                           "voiced step to 0.25 s after the last (leading/trailing silence skipped)"),
        Recipe("whisper-logreg", _W, "logreg", {"C": 0.05},
               description="Whisper tiny.en encoder (mean+std pooled), logistic regression"),
        Recipe("fusion-logreg", {"type": "concat", "parts": [_W, {"type": "classic"}, {"type": "prosody"}]},
               "logreg", {"C": 0.02},
               description="Whisper tiny.en encoder (mean+std) + classic + prosody statistics, logistic regression"),
        Recipe("classic-mlp", CLASSIC_RECIPE_FEATURES, "mlp",
               {"hidden_layer_sizes": [200, 200, 100, 50], "alpha": 0.01, "early_stopping": False},
               description="the hobby-project seed recipe: mean MFCC40+chroma+mel128, MLP 200-200-100-50"),
        Recipe("classic-svm", {"type": "classic"}, "svm", {"C": 10.0},
               description="classic statistics (mean+std), RBF SVM"),
        Recipe("classic-logreg", {"type": "classic"}, "logreg", {"C": 0.1},
               description="classic statistics (mean+std), logistic regression"),
        Recipe("classicplus-logreg", {"type": "classic", "features": ["zcr", "rms", "mfcc", "mfcc_delta", "chroma",
                                                                      "mel", "spectral"]}, "logreg", {"C": 0.1},
               description="classic + MFCC deltas + spectral shape (mean+std), logistic regression"),
        Recipe("classic-cnn1d", {"type": "classic"}, "cnn1d",
               {"epochs": 60, "patience": 8, "batch_size": 64, "class_weight": "balanced", "threads": 2},
               description="classic statistics, Conv1D x4 + dense, early stopping on held-out speakers (PyTorch)"),
        Recipe("logmel-cnn2d", {"type": "logmel", "n_mels": 40, "normalise": "utterance"}, "cnn2d",
               {"width": 0.5, "crop_frames": 200, "epochs": 30, "patience": 6, "class_weight": "balanced",
                "threads": 2},
               description="log-mel 40 (per-utterance normalised), 2-D CNN, SpecAugment, early stopping (PyTorch)"),
        Recipe("logmel-crnn", {"type": "logmel", "n_mels": 40, "normalise": "utterance"}, "crnn",
               {"width": 0.5, "rnn_hidden": 64, "crop_frames": 200, "epochs": 40, "patience": 8,
                "class_weight": "balanced", "threads": 2},
               description="log-mel 40 (per-utterance normalised), CNN + BiGRU + attention, SpecAugment (PyTorch)"),
    ]
}

DEFAULT_RECIPE = "whisper-span-aug-logreg"


def get_recipe(name: str | None = None) -> Recipe:
    key = name or DEFAULT_RECIPE
    if key not in RECIPES:
        raise ConfigError(f"recipe={key!r} must be one of {sorted(RECIPES)}")
    return RECIPES[key]
