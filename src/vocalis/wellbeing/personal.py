"""Per-user adaptation of the global emotion model from a handful of enrolled clips.

Given the user's enrolled backbone embeddings ``x`` (e.g. 3840-d) and their mood labels:

1. **Speaker normalisation.** ``mean_`` is the user's mean embedding; ``scale_`` a per-dimension
   scale: the global model's feature scale when known (``reference_scale``, read from the
   bundle's scaler), else the user's own standard deviation shrunk toward its median (a few
   clips cannot estimate 3840 variances). ``z = (x - mean_) / scale_``.
   For the global model the same idea shifts the user's embeddings onto the population mean:
   :meth:`PersonalModel.adapt` returns ``x - mean_ + reference_mean``, but only once every mood
   is enrolled (:attr:`PersonalModel.shifts`): the mean of some moods is not the speaker's.
2. **A small head** on ``z``: a ridge-regression classifier (one-vs-rest ±1 targets, solved in
   closed form in the dual, numpy only) whose scores go through a softmax with a fixed
   inverse temperature ``beta``.
3. **Blending** with the global model: ``p = (1 - w) p_global + w p_user`` with
   ``w = m / (m + k0)``, ``m`` the mean number of enrolled clips per enrolled class, so the
   user's head earns trust as samples grow. Classes the user never enrolled keep their global
   probability; the head only redistributes the mass of the enrolled classes.
4. **Calibration of the blend.** The global model is temperature-calibrated on held-out speakers,
   but a blend of it with an uncalibrated head is not. When :meth:`PersonalModel.fit` is given the
   global model (``global_proba``), it predicts every enrolled clip with a personal model fitted
   *without* that clip (leave-one-out; 10 folds above :data:`LOO_MAX` clips), blends as above and
   fits one temperature ``T`` on those held-out predictions: the MAP estimate under a log-normal
   prior centred on 1 (``prior_sd``), so a handful of clips moves ``T`` little. Only clips whose
   mood keeps at least one other enrolled clip count; with fewer than ``min_calibration`` of them,
   ``T = 1`` and the blend keeps the global model's calibration. Served probabilities are
   ``softmax(log p / T)``.

A fitted model records the sha256 of the global model it was fitted with (``global_sha256_``,
see :func:`bundle_fingerprint`) and of its feature extractor (``features_sha256_``), so a
personal model is never silently blended with a different global model
(:func:`vocalis.wellbeing.service.personal_model` refits or raises :class:`StaleModelError`).

Everything learned is a plain array, saved with ``np.savez(..., allow_pickle=False)`` plus a
JSON sidecar; nothing is ever pickled. Fitting and prediction need numpy only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.errors import ConfigError, DataError, ModelError

FORMAT = "vocalis-personal-model"
VERSION = 2  # v2: calibration temperature and the fingerprints of the global model
LOO_MAX = 40  # leave-one-out up to this many enrolled clips, 10 folds above


class StaleModelError(ModelError):
    """A personal model was fitted with another global model and cannot be refitted for this one."""


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise (``T = 1`` returns ``p`` renormalised)."""
    p = np.atleast_2d(np.asarray(p, dtype=np.float64))
    if temperature == 1.0:
        return np.asarray(p / p.sum(axis=1, keepdims=True))
    return _softmax(np.log(np.clip(p, 1e-12, 1.0)) / temperature)


def fit_temperature(p: np.ndarray, y: np.ndarray, *, prior_sd: float = 0.5) -> float:
    """MAP temperature of ``softmax(log p / T)`` for labels ``y`` (column indices), numpy only.

    Minimises ``sum_i NLL_i(T) + (ln T)^2 / (2 prior_sd^2)`` over ``T`` in [0.14, 7.4] (a grid on
    ``ln T`` refined once), so few predictions keep ``T`` near 1.

    >>> p = np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.99, 0.01]] * 5)  # overconfident
    >>> fit_temperature(p, np.array([0, 1, 1, 0] * 5)) > 1
    True
    """
    logp = np.log(np.clip(np.atleast_2d(np.asarray(p, dtype=np.float64)), 1e-12, 1.0))
    y = np.asarray(y, dtype=np.int64)
    if logp.shape[0] != y.shape[0] or logp.shape[0] == 0:
        raise DataError(f"p has {logp.shape[0]} rows and y {y.shape[0]} labels; they must match and be > 0")

    def objective(log_t: np.ndarray) -> np.ndarray:
        z = logp[None] / np.exp(log_t)[:, None, None]  # (G, n, K)
        z = z - z.max(axis=2, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=2))
        nll = (lse - z[:, np.arange(len(y)), y]).sum(axis=1)
        return np.asarray(nll + log_t**2 / (2 * prior_sd**2))

    grid = np.linspace(-2.0, 2.0, 201)
    best = float(grid[int(np.argmin(objective(grid)))])
    fine = np.linspace(best - 0.02, best + 0.02, 41)
    return round(float(np.exp(fine[int(np.argmin(objective(fine)))])), 4)


def _softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


class PersonalModel:
    """Per-user speaker normalisation + ridge head, blended with the global model.

    Parameters are stored unchanged; :meth:`fit` learns ``mean_``, ``scale_``, ``coef_``,
    ``intercept_``, ``classes_`` and ``n_``.

    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (3, 16)), rng.normal(2, 1, (3, 16))]
    >>> pm = PersonalModel(["happy", "sad"]).fit(X, ["happy"] * 3 + ["sad"] * 3)
    >>> p = pm.predict_proba(X[:1], np.array([[0.5, 0.5]]))
    >>> p.shape, bool(p[0, 0] > 0.5), round(float(p.sum()), 6)
    ((1, 2), True, 1.0)
    """

    def __init__(self, labels: Sequence[str], *, k0: float = 2.0, alpha: float = 0.1, beta: float = 3.0,
                 shrink: float = 8.0, min_calibration: int = 8, prior_sd: float = 0.5) -> None:
        self.labels = list(labels)
        self.k0 = k0
        self.alpha = alpha
        self.beta = beta
        self.shrink = shrink
        self.min_calibration = min_calibration
        self.prior_sd = prior_sd
        if len(set(self.labels)) != len(self.labels) or not self.labels:
            raise ConfigError(f"labels={self.labels} must be a non-empty list of distinct labels")
        for name in ("k0", "alpha", "beta", "prior_sd"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be > 0")
        if shrink < 0:
            raise ConfigError(f"shrink={shrink} must be >= 0")
        if int(min_calibration) < 2:
            raise ConfigError(f"min_calibration={min_calibration} must be >= 2")

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: Sequence[str], *, reference_mean: np.ndarray | None = None,
            reference_scale: np.ndarray | None = None,
            global_proba: Callable[[np.ndarray], np.ndarray] | None = None,
            global_sha256: str = "", features_sha256: str = "") -> PersonalModel:
        """Fit on enrolled embeddings ``X`` ``(n, D)`` with labels ``y`` (each one of :attr:`labels`).

        ``reference_mean``/``reference_scale``: the global model's feature mean/std (optional).
        With a single enrolled class the head is empty and predictions equal the global model.
        ``global_proba``: the global model, ``(N, D)`` embeddings -> ``(N, K)`` calibrated
        probabilities over :attr:`labels`; given, the blend's temperature is fitted on held-out
        enrolled clips (module docstring, step 4), else ``T = 1``.
        ``global_sha256``/``features_sha256``: fingerprints of that global model
        (:func:`bundle_fingerprint`), stored with the model.
        """
        X = np.asarray(X, dtype=np.float64)
        y = [str(v) for v in y]
        if X.ndim != 2 or X.shape[0] == 0:
            raise DataError(f"X.shape={X.shape} must be (n >= 1, D)")
        if len(y) != X.shape[0]:
            raise DataError(f"len(y)={len(y)} must equal the number of embeddings {X.shape[0]}")
        if not np.all(np.isfinite(X)):
            raise DataError("enrolled embeddings must be finite")
        unknown = sorted(set(y) - set(self.labels))
        if unknown:
            raise DataError(f"labels {unknown} are not among the model's labels {self.labels}")
        n, d = X.shape
        self.mean_ = X.mean(axis=0)
        if reference_scale is not None:
            scale = np.asarray(reference_scale, dtype=np.float64).ravel()
            if scale.shape != (d,):
                raise DataError(f"reference_scale has shape {scale.shape}; expected ({d},)")
        else:
            var = X.var(axis=0)
            lam = n / (n + self.shrink) if n > 1 else 0.0
            pooled = float(np.median(var)) if n > 1 else 1.0
            scale = np.sqrt(lam * var + (1 - lam) * max(pooled, 1e-12))
        self.scale_ = np.where(scale > 1e-8, scale, 1.0)
        self.reference_mean_ = (np.asarray(reference_mean, dtype=np.float64).ravel()
                                if reference_mean is not None else np.zeros(0))
        if self.reference_mean_.size not in (0, d):
            raise DataError(f"reference_mean has {self.reference_mean_.size} values; expected {d}")
        classes = [lab for lab in self.labels if lab in set(y)]
        self.classes_ = classes
        self.n_ = n
        self.counts_ = {lab: y.count(lab) for lab in classes}
        self.global_sha256_, self.features_sha256_ = str(global_sha256), str(features_sha256)
        self.temperature_ = 1.0
        self.calibration_: dict[str, Any] = {"method": "global", "n": 0}
        if len(classes) < 2:
            self.coef_ = np.zeros((len(classes), d))
            self.intercept_ = np.zeros(len(classes))
            return self
        Z = (X - self.mean_) / self.scale_
        idx = np.array([classes.index(v) for v in y])
        Y = -np.ones((n, len(classes)))
        Y[np.arange(n), idx] = 1.0
        # dual ridge: W = Z^T (Z Z^T / d + alpha I)^-1 Y / d  (n x n system; n is tiny)
        gram = Z @ Z.T / d + self.alpha * np.eye(n)
        dual = np.linalg.solve(gram, Y)
        self.coef_ = Z.T @ dual / d
        self.intercept_ = np.zeros(len(classes))
        if global_proba is not None:
            self._calibrate(X, y, global_proba, reference_mean, reference_scale)
        return self

    def _calibrate(self, X: np.ndarray, y: list[str], global_proba: Callable[[np.ndarray], np.ndarray],
                   reference_mean: np.ndarray | None, reference_scale: np.ndarray | None) -> None:
        """Fit :attr:`temperature_` on held-out (leave-one-out / 10-fold) blended predictions."""
        n = X.shape[0]
        n_folds = n if n <= LOO_MAX else 10
        fold = np.random.default_rng(0).permutation(n) % n_folds
        subs: list[tuple[PersonalModel, np.ndarray]] = []
        for f in range(n_folds):
            test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
            seen = {y[i] for i in train}
            test = np.array([i for i in test if y[i] in seen], dtype=np.int64)
            if test.size == 0 or len(seen) < 2:
                continue
            cfg = self.get_config()
            sub = PersonalModel(**cfg).fit(X[train], [y[i] for i in train], reference_mean=reference_mean,
                                           reference_scale=reference_scale)
            subs.append((sub, test))
        idx = np.concatenate([t for _, t in subs]) if subs else np.zeros(0, dtype=np.int64)
        self.calibration_ = {"method": "global", "n": int(idx.size)}
        if idx.size < self.min_calibration or len({y[i] for i in idx}) < 2:
            return
        pg = np.atleast_2d(np.asarray(global_proba(np.concatenate([s.adapt(X[t]) for s, t in subs])),
                                      dtype=np.float64))
        if pg.shape != (idx.size, len(self.labels)):
            raise DataError(f"global_proba returned shape {pg.shape}; expected ({idx.size}, {len(self.labels)})")
        held, start = [], 0
        for sub, t in subs:
            held.append(sub.predict_proba(X[t], pg[start:start + t.size]))
            start += t.size
        p = np.concatenate(held)
        target = np.array([self.labels.index(y[i]) for i in idx])
        self.temperature_ = fit_temperature(p, target, prior_sd=self.prior_sd)
        nll = float(-np.log(np.clip(p[np.arange(idx.size), target], 1e-12, 1)).mean())
        pc = apply_temperature(p, self.temperature_)
        nll_t = float(-np.log(np.clip(pc[np.arange(idx.size), target], 1e-12, 1)).mean())
        self.calibration_ = {"method": "leave-one-out" if n_folds == n else f"{n_folds}-fold", "n": int(idx.size),
                             "nll_before": round(nll, 4), "nll_after": round(nll_t, 4)}

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise ModelError("PersonalModel is not fitted; call fit() or load() first")

    # -- inference -----------------------------------------------------------------------------
    @property
    def weight(self) -> float:
        """Blend weight ``w = m / (m + k0)``, ``m`` = mean enrolled clips per class (0 if no head)."""
        self._check_fitted()
        if len(self.classes_) < 2:
            return 0.0
        m = self.n_ / len(self.classes_)
        return float(m / (m + self.k0))

    @property
    def shifts(self) -> bool:
        """Whether :meth:`adapt` moves embeddings: only when every mood of :attr:`labels` is enrolled.

        The shift maps the user's mean onto the population's, which averages *every* mood. A user
        who enrolled only some moods has a mean that is those moods', so the shift would move their
        voice away from exactly them: enrolling only "neutral" took neutral recall from 0.77 to 0.00
        and 8-class UA from 0.78 to 0.61 on RAVDESS (leave-one-actor-out; ``benchmarks/notes.md``,
        "Personalisation with some moods enrolled"). The head still personalises those moods.
        """
        self._check_fitted()
        return self.reference_mean_.size > 0 and set(self.classes_) == set(self.labels)

    def adapt(self, X: np.ndarray) -> np.ndarray:
        """Speaker-normalised embeddings for the *global* model: ``x - mean_ + reference_mean``.

        Unchanged without a reference mean or unless every mood is enrolled (:attr:`shifts`).
        """
        x = np.asarray(X, dtype=np.float64)
        if not self.shifts:
            return x.astype(np.float32)
        return (x - self.mean_ + self.reference_mean_).astype(np.float32)

    def user_proba(self, X: np.ndarray) -> np.ndarray:
        """The head's probabilities over :attr:`classes_` (``(N, C)``)."""
        self._check_fitted()
        x = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if x.shape[1] != self.mean_.shape[0]:
            raise DataError(f"embedding has {x.shape[1]} values; this personal model expects {self.mean_.shape[0]}")
        z = (x - self.mean_) / self.scale_
        return _softmax(self.beta * (z @ self.coef_ + self.intercept_))

    def predict_proba(self, X: np.ndarray, global_proba: np.ndarray) -> np.ndarray:
        """Blend ``(N, K)`` global probabilities (columns = :attr:`labels`) with the user head.

        The blend goes through the fitted temperature (:attr:`temperature_`; 1 when uncalibrated).
        """
        self._check_fitted()
        pg = np.atleast_2d(np.asarray(global_proba, dtype=np.float64))
        if pg.shape[1] != len(self.labels):
            raise DataError(f"global_proba has {pg.shape[1]} columns; expected {len(self.labels)} ({self.labels})")
        w = self.weight
        if w == 0.0:
            return pg / pg.sum(axis=1, keepdims=True)
        cols = [self.labels.index(c) for c in self.classes_]
        mass = pg[:, cols].sum(axis=1, keepdims=True)
        pu = pg.copy()
        pu[:, cols] = self.user_proba(X) * mass
        p = (1 - w) * pg + w * pu
        return apply_temperature(p, self.temperature_)

    # -- persistence ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"labels": self.labels, "k0": self.k0, "alpha": self.alpha, "beta": self.beta, "shrink": self.shrink,
                "min_calibration": self.min_calibration, "prior_sd": self.prior_sd}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every learned parameter as a plain numeric array."""
        self._check_fitted()
        return {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "intercept": self.intercept_,
                "reference_mean": self.reference_mean_}

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.npz`` (arrays, ``allow_pickle=False``) and ``<path>.json`` (config, classes, counts)."""
        self._check_fitted()
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        npz, meta = base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")
        tmp = base.with_name(base.name + ".tmp.npz")
        with open(tmp, "wb") as f:
            np.savez(f, allow_pickle=False, **self.to_arrays())
        tmp.replace(npz)
        doc = {"format": FORMAT, "version": VERSION, "config": self.get_config(), "classes": self.classes_,
               "counts": self.counts_, "n": self.n_, "weight": self.weight, "temperature": self.temperature_,
               "calibration": self.calibration_, "global_sha256": self.global_sha256_,
               "features_sha256": self.features_sha256_}
        tmp_meta = base.with_name(base.name + ".tmp.json")
        tmp_meta.write_text(json.dumps(doc, indent=2, sort_keys=True))
        tmp_meta.replace(meta)
        return npz, meta

    @classmethod
    def load(cls, path: str | Path) -> PersonalModel:
        """Load a model written by :meth:`save` (refuses pickled arrays)."""
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        npz, meta = base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")
        try:
            doc = json.loads(meta.read_text())
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
        except FileNotFoundError as e:
            raise ModelError(f"personal model={base} not found ({e.filename})") from e
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise ModelError(f"personal model={base} is unreadable: {e}") from e
        if doc.get("format") != FORMAT or int(doc.get("version", 0)) > VERSION:
            raise ModelError(f"personal model={base}: format {doc.get('format')!r} v{doc.get('version')} is not supported")
        missing = {"mean", "scale", "coef", "intercept", "reference_mean"} - set(arrays)
        if missing:
            raise ModelError(f"personal model={base}: arrays {sorted(missing)} are missing")
        pm = cls(**doc["config"])
        pm.mean_, pm.scale_, pm.coef_ = arrays["mean"], arrays["scale"], arrays["coef"]
        pm.intercept_, pm.reference_mean_ = arrays["intercept"], arrays["reference_mean"]
        pm.classes_ = [str(c) for c in doc["classes"]]
        pm.counts_ = {str(k): int(v) for k, v in doc["counts"].items()}
        pm.n_ = int(doc["n"])
        pm.temperature_ = float(doc.get("temperature", 1.0))  # v1 files: uncalibrated blend
        if not pm.temperature_ > 0:
            raise ModelError(f"personal model={base}: temperature={pm.temperature_} must be > 0")
        pm.calibration_ = dict(doc.get("calibration") or {"method": "global", "n": 0})
        pm.global_sha256_ = str(doc.get("global_sha256", ""))  # "" in v1 files: fitted on an unrecorded model
        pm.features_sha256_ = str(doc.get("features_sha256", ""))
        return pm


def bundle_reference(onnx_bytes: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The global model's feature ``(mean, std)`` read from the ``Scaler`` node of its ONNX graph.

    scikit-learn pipelines exported by Vocalis start with a StandardScaler, which skl2onnx writes
    as ``ai.onnx.ml.Scaler(offset=mean, scale=1/std)``. Returns ``None`` for other graphs.
    """
    import onnx

    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception:  # any parse failure just means "no reference"
        return None
    for node in model.graph.node:
        if node.op_type == "Scaler":
            attrs = {a.name: list(a.floats) for a in node.attribute}
            offset, scale = np.asarray(attrs.get("offset", [])), np.asarray(attrs.get("scale", []))
            if offset.size and offset.size == scale.size and np.all(scale != 0):
                return offset.astype(np.float64), (1.0 / scale).astype(np.float64)
    return None


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def bundle_fingerprint(bundle: Any) -> tuple[str, str]:
    """``(global_sha256, features_sha256)`` of a loaded bundle.

    ``global_sha256`` covers everything that shapes the global probabilities: the ONNX graph's
    sha256, the labels, the feature config and the calibration. ``features_sha256`` covers only
    the feature extractor (config minus its thread count, and the sample rate): enrolled
    embeddings with the same ``features_sha256`` can be reused to refit for another global model.
    """
    m = bundle.manifest
    graph = (m.files.get("model.onnx") or {}).get("sha256") or hashlib.sha256(bundle._onnx).hexdigest()
    feats = {k: v for k, v in dict(m.features).items() if k != "threads"}
    features_sha = _sha256_json({"features": feats, "sample_rate": m.sample_rate})
    global_sha = _sha256_json({"graph": graph, "labels": list(m.labels), "features": features_sha,
                               "calibration": dict(m.calibration), "input_kind": m.input_kind})
    return global_sha, features_sha
