"""PyTorch classifiers with scikit-learn habits, exported to ONNX for serving.

* :class:`CNN1DClassifier` — Conv1D stack on a fixed feature *vector* ``(N, D)``;
* :class:`CNN2DClassifier` — small 2-D CNN on log-mel *frames* ``(C, T_i)``;
* :class:`CRNNClassifier` — conv blocks -> bidirectional GRU/LSTM -> attention pooling.

Habits shared with scikit-learn: ``__init__`` stores the parameters unchanged (validated in
:meth:`TorchClassifier.fit`), learned attributes end in ``_``, ``get_params``/``set_params``
work (so ``sklearn.base.clone`` does), ``classes_`` holds the labels.

Training (:meth:`TorchClassifier.fit`): an inner validation split — speaker-disjoint when
``groups`` (speaker ids) are given, else stratified (:func:`inner_validation_split`) — drives
early stopping (``patience`` epochs without a better validation loss) and ``ReduceLROnPlateau``;
the best weights are restored. Feature standardisation (mean/std of the *training* part only)
is a layer of the network, so the ONNX graph from :meth:`TorchClassifier.to_onnx` takes raw
features. Runs are seeded and deterministic on CPU for a given ``seed`` and ``threads``;
the caller's global torch RNG and thread count are restored afterwards.

Frame models train on random crops of ``crop_frames`` frames (short clips are tiled), with
optional SpecAugment and mixup, and predict on whole clips (clips of equal length are batched
together, so no padding ever reaches the time pooling). Clips shorter than the network's
``min_frames`` are tiled up to it.

torch is imported lazily: importing this module works without it; building or fitting raises
:class:`~vocalis.errors.DependencyError` with the install hint.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vocalis.augment import spec_augment
from vocalis.errors import ConfigError, DataError, ModelError, require

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "CNN1DClassifier",
    "CNN2DClassifier",
    "CRNNClassifier",
    "TorchClassifier",
    "inner_validation_split",
]

ProgressCallback = Callable[[int, int], None]
FrameInput = Sequence[np.ndarray] | np.ndarray


def _torch() -> Any:
    return require("torch", "torch")


def _modules() -> Any:
    _torch()
    from vocalis.models import _torch_modules

    return _torch_modules


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    torch = _torch()
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _inner_split(
    y: np.ndarray, groups: np.ndarray | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    n = len(y)
    idx = np.arange(n)
    if val_fraction <= 0.0 or n < 2:
        return idx, idx[:0], "none"
    sk: Any = require("sklearn.model_selection", "train")
    if groups is not None:
        if len(np.unique(groups)) >= 2:
            split = sk.GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
            tr, va = next(split.split(idx, y, groups))
            return np.sort(tr), np.sort(va), "group"
        warnings.warn(
            "groups has a single speaker: the inner validation split cannot be speaker-disjoint; "
            "falling back to a stratified split",
            stacklevel=3,
        )
    try:
        split = sk.StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        tr, va = next(split.split(idx, y))
        kind = "stratified"
    except ValueError:  # a class with one member, or too few samples per class
        split = sk.ShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        tr, va = next(split.split(idx))
        kind = "random"
    return np.sort(tr), np.sort(va), kind


def inner_validation_split(
    y: Sequence[Any] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_idx, val_idx)`` for early stopping inside ``fit``.

    With ``groups`` (speaker ids, at least two distinct) the split is speaker-disjoint
    (``GroupShuffleSplit``: ``val_fraction`` of the *speakers* go to validation); otherwise it
    is stratified by label (plain shuffled when a class is too small). ``val_fraction == 0``
    returns an empty validation set.

    Example (needs scikit-learn)::

        train_idx, val_idx = inner_validation_split(y, groups=speakers, val_fraction=0.15, seed=0)
        assert set(speakers[train_idx]).isdisjoint(speakers[val_idx])
    """
    y_arr = np.asarray(y)
    g = None if groups is None else np.asarray(groups)
    if g is not None and len(g) != len(y_arr):
        raise DataError(f"groups={len(g)} must match y={len(y_arr)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1)")
    tr, va, _ = _inner_split(y_arr, g, val_fraction, seed)
    return tr, va


def _batches(n: int, batch_size: int, order: np.ndarray) -> list[np.ndarray]:
    """Split ``order`` into batches, merging a trailing batch of one (BatchNorm needs two)."""
    chunks = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = np.concatenate([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


def _tile_to(x: np.ndarray, length: int) -> np.ndarray:
    """Repeat a ``(C, T)`` clip along time until it has at least ``length`` frames."""
    t = x.shape[1]
    if t >= length:
        return x
    return np.tile(x, (1, -(-length // t)))


class TorchClassifier:
    """Shared training loop, prediction and ONNX export (see the module docstring).

    Subclasses define ``__init__`` (parameters only) and :meth:`_build_net`.
    """

    frame_input: ClassVar[bool] = False
    """True: ``X`` is a list of ``(C, T_i)`` frame matrices; False: an ``(N, D)`` matrix."""

    # parameters every subclass defines in __init__
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    dropout: float
    val_fraction: float
    class_weight: str | None
    seed: int
    threads: int
    verbose: bool
    progress: ProgressCallback | None

    # ------------------------------------------------------------------ sklearn API
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (scikit-learn protocol)."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(f"parameter {key}={value!r} must be one of {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ------------------------------------------------------------------ hooks
    def _check_params(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
                raise ConfigError(f"{name}={v!r} must be an integer >= {minimum}")

        for name in ("epochs", "batch_size", "patience", "threads"):
            positive_int(name)
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr} must be > 0")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight={self.class_weight!r} must be None or 'balanced'")

    def _build_net(self, mean: np.ndarray, std: np.ndarray, n_classes: int) -> Any:
        raise NotImplementedError

    @property
    def min_frames(self) -> int:
        """Shortest clip (frames) the network accepts; shorter clips are tiled in predict."""
        return 1

    # ------------------------------------------------------------------ input handling
    def _as_input(self, X: Any, fitting: bool) -> np.ndarray | list[np.ndarray]:
        if self.frame_input:
            items = list(X) if not isinstance(X, np.ndarray) or X.ndim == 3 else None
            if items is None:
                raise DataError(f"X shape={np.shape(X)} must be a list of (channels, time) matrices")
            frames = [np.asarray(x, dtype=np.float32) for x in items]
            if not frames:
                raise DataError("X=[] must contain at least one clip")
            expected = frames[0].shape[0] if fitting else self.n_features_in_
            for i, f in enumerate(frames):
                if f.ndim != 2 or f.shape[0] != expected or f.shape[1] < 1:
                    raise DataError(f"X[{i}] shape={f.shape} must be (channels={expected}, time>=1) frames")
                if not np.all(np.isfinite(f)):
                    raise DataError(f"X[{i}] values must be finite (found NaN or inf)")
            return frames
        arr = np.asarray(X, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] < 1:
            raise DataError(f"X shape={arr.shape} must be (n_samples, n_features)")
        if not fitting and arr.shape[1] != self.n_features_in_:
            raise DataError(f"X n_features={arr.shape[1]} must be {self.n_features_in_} as in fit")
        if not np.all(np.isfinite(arr)):
            raise DataError("X values must be finite (found NaN or inf)")
        return arr

    def _moments(self, X: np.ndarray | list[np.ndarray], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.frame_input:
            stacked = np.concatenate([X[i] for i in idx], axis=1).astype(np.float64)
            mean, std = stacked.mean(axis=1), stacked.std(axis=1)
        else:
            sub = np.asarray(X)[idx].astype(np.float64)
            mean, std = sub.mean(axis=0), sub.std(axis=0)
        std = np.where(std < 1e-6, 1.0, std)
        return mean.astype(np.float32), std.astype(np.float32)

    def _train_batch(
        self, X: np.ndarray | list[np.ndarray], idx: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Training inputs for ``idx`` (frame models crop/tile and SpecAugment here)."""
        return np.asarray(X)[idx]

    # ------------------------------------------------------------------ fit
    def fit(
        self, X: Any, y: Sequence[Any] | np.ndarray, *, groups: Sequence[Any] | np.ndarray | None = None
    ) -> Self:
        """Train on ``X`` with labels ``y``; ``groups`` (speaker ids) make the inner validation
        split speaker-disjoint. Returns ``self``."""
        torch = _torch()
        self._check_params()
        data = self._as_input(X, fitting=True)
        y_arr = np.asarray(y)
        if y_arr.ndim != 1 or len(y_arr) != len(data):
            raise DataError(f"y shape={y_arr.shape} must be ({len(data)},) like X")
        classes, y_enc = np.unique(y_arr, return_inverse=True)
        if len(classes) < 2:
            raise DataError(f"y classes={classes.tolist()} must contain at least 2 classes")
        g = None if groups is None else np.asarray(groups)
        if g is not None and len(g) != len(y_arr):
            raise DataError(f"groups={len(g)} must match y={len(y_arr)}")

        tr, va, split_kind = _inner_split(y_enc, g, float(self.val_fraction), int(self.seed))
        if len(tr) < 2:
            raise DataError(f"training samples={len(tr)} must be at least 2 after the validation split")
        self.classes_ = classes
        self.n_features_in_ = int(data[0].shape[0]) if self.frame_input else int(np.asarray(data).shape[1])
        self.val_split_ = split_kind
        self.mean_, self.std_ = self._moments(data, tr)
        self._before_training(data, tr)

        counts = np.bincount(y_enc[tr], minlength=len(classes)).astype(np.float64)
        if self.class_weight == "balanced":
            weights = len(tr) / (len(classes) * np.maximum(counts, 1.0))
        else:
            weights = np.ones(len(classes))

        with _torch_threads(int(self.threads)), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            rng = np.random.default_rng(int(self.seed))
            net = self._build_net(self.mean_, self.std_, len(classes))
            self._train(net, data, y_enc, tr, va, rng, torch.as_tensor(weights, dtype=torch.float32))
        return self

    def _before_training(self, X: np.ndarray | list[np.ndarray], train_idx: np.ndarray) -> None:
        """Hook for subclasses (frame models fix their crop length here)."""

    def _train(
        self,
        net: Any,
        X: np.ndarray | list[np.ndarray],
        y: np.ndarray,
        tr: np.ndarray,
        va: np.ndarray,
        rng: np.random.Generator,
        class_weights: Any,
    ) -> None:
        torch = _torch()
        nn_f = torch.nn.functional
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=max(1, int(self.patience) // 2)
        )
        mixup = float(getattr(self, "mixup", 0.0) or 0.0)
        y_t = torch.as_tensor(y, dtype=torch.long)
        history: list[dict[str, Any]] = []
        best_loss, best_epoch, best_state = np.inf, 0, copy.deepcopy(net.state_dict())
        stale = 0
        for epoch in range(1, int(self.epochs) + 1):
            net.train()
            order = rng.permutation(tr)
            total, seen = 0.0, 0
            for b in _batches(len(order), int(self.batch_size), order):
                xb = torch.from_numpy(np.ascontiguousarray(self._train_batch(X, b, rng), dtype=np.float32))
                yb = y_t[b]
                if mixup > 0:
                    lam = float(rng.beta(mixup, mixup))
                    perm = torch.from_numpy(rng.permutation(len(b)))
                    logits = net(lam * xb + (1 - lam) * xb[perm])
                    loss = lam * nn_f.cross_entropy(logits, yb, weight=class_weights) + (
                        1 - lam
                    ) * nn_f.cross_entropy(logits, yb[perm], weight=class_weights)
                else:
                    loss = nn_f.cross_entropy(net(xb), yb, weight=class_weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
                seen += len(b)
            train_loss = total / max(seen, 1)
            lr_now = float(opt.param_groups[0]["lr"])
            val_loss: float | None
            val_acc: float | None
            if len(va):
                logits_va = torch.from_numpy(
                    self._logits(net, [X[i] for i in va] if self.frame_input else np.asarray(X)[va])
                )
                val_loss = float(nn_f.cross_entropy(logits_va, y_t[va], weight=class_weights))
                val_acc = float((logits_va.argmax(dim=1) == y_t[va]).float().mean())
                monitor = val_loss
            else:
                val_loss = val_acc = None
                monitor = train_loss
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_acc": val_acc,
                    "lr": lr_now,
                }
            )
            if self.verbose:
                va_txt = "" if val_loss is None else f" val_loss={val_loss:.4f} val_acc={val_acc:.3f}"
                print(
                    f"[{type(self).__name__}] epoch {epoch}/{self.epochs} train_loss={train_loss:.4f}{va_txt} lr={lr_now:.2e}",
                    file=sys.stderr,
                )
            if self.progress is not None:
                self.progress(epoch, int(self.epochs))
            sched.step(monitor)
            if len(va) == 0:
                best_epoch, best_state = epoch, None
                continue
            if monitor < best_loss - 1e-6:
                best_loss, best_epoch, stale = monitor, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= int(self.patience):
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.model_ = net
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.n_epochs_ = len(history)

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ModelError(f"{type(self).__name__} is not fitted: call fit() first")

    def _logits(self, net: Any, X: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Eval-mode logits; frame clips are grouped by length (no padding inside a batch)."""
        torch = _torch()
        net.eval()
        bs = max(int(self.batch_size), 1)
        with torch.inference_mode():
            if not self.frame_input:
                arr = np.asarray(X, dtype=np.float32)
                outs = [net(torch.from_numpy(arr[i : i + bs])).numpy() for i in range(0, len(arr), bs)]
                return np.concatenate(outs).astype(np.float32)
            clips = [_tile_to(np.asarray(x, dtype=np.float32), self.min_frames) for x in X]
            out = np.zeros((len(clips), len(self.classes_)), dtype=np.float32)
            by_len: dict[int, list[int]] = {}
            for i, c in enumerate(clips):
                by_len.setdefault(c.shape[1], []).append(i)
            for members in by_len.values():
                for j in range(0, len(members), bs):
                    sel = members[j : j + bs]
                    xb = torch.from_numpy(np.stack([clips[i] for i in sel]))
                    out[sel] = net(xb).numpy()
            return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, K)`` in the order of ``classes_`` (rows sum to 1)."""
        torch = _torch()
        self._check_fitted()
        data = self._as_input(X, fitting=False)
        with _torch_threads(int(self.threads)):
            logits = torch.from_numpy(self._logits(self.model_, data))
            return torch.softmax(logits, dim=1).numpy().astype(np.float32)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable label of each sample."""
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])

    # ------------------------------------------------------------------ export
    def to_onnx(self) -> bytes:
        """Serialized ONNX model (opset 17): input ``features``, output ``probabilities``.

        Frame models take ``[N, C, T]`` (dynamic ``N`` and ``T >= min_frames``), vector models
        ``[N, D]`` (dynamic ``N``). Standardisation and softmax are inside the graph, so raw
        features go in. Metadata: ``classes`` (JSON list), ``min_frames``, ``estimator``.
        """
        torch = _torch()
        self._check_fitted()
        mods = _modules()
        head = mods.SoftmaxHead(copy.deepcopy(self.model_)).eval()
        if self.frame_input:
            dummy = torch.zeros(2, self.n_features_in_, max(self.min_frames, 32))
            axes = {"features": {0: "N", 2: "T"}, "probabilities": {0: "N"}}
        else:
            dummy = torch.zeros(2, self.n_features_in_)
            axes = {"features": {0: "N"}, "probabilities": {0: "N"}}
        buf = io.BytesIO()
        with warnings.catch_warnings(), _torch_threads(int(self.threads)):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                (dummy,),
                buf,
                input_names=["features"],
                output_names=["probabilities"],
                dynamic_axes=axes,
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )
        onnx: Any = require("onnx", "train")
        model = onnx.load_from_string(buf.getvalue())
        meta = {
            "classes": json.dumps([c.item() if isinstance(c, np.generic) else c for c in self.classes_]),
            "min_frames": str(self.min_frames),
            "estimator": type(self).__name__,
        }
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        return bytes(model.SerializeToString())


class CNN1DClassifier(TorchClassifier):
    """Conv1D x4 (256-128-128-64, kernel 5, BN, ReLU, MaxPool, Dropout) + dense on ``(N, D)`` vectors.

    The popular hobby SER design (e.g. on 180-193 MFCC/chroma/mel statistics). ``D`` may be
    any size; pooling stops once the sequence length reaches 1.
    """

    frame_input = False

    def __init__(
        self,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 10,
        dropout: float = 0.3,
        val_fraction: float = 0.15,
        class_weight: str | None = None,
        seed: int = 0,
        threads: int = 1,
        verbose: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.class_weight = class_weight
        self.seed = seed
        self.threads = threads
        self.verbose = verbose
        self.progress = progress

    def _build_net(self, mean: np.ndarray, std: np.ndarray, n_classes: int) -> Any:
        return _modules().CNN1DNet(mean, std, n_classes, float(self.dropout))


class _FrameClassifier(TorchClassifier):
    """Frame-model training extras: crop/tile to ``crop_frames``, SpecAugment, mixup."""

    frame_input = True
    crop_frames: int
    spec_augment: bool
    mixup: float
    width: float

    def _check_params(self) -> None:
        super()._check_params()
        c = self.crop_frames
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < self.min_frames:
            raise ConfigError(f"crop_frames={c!r} must be an integer >= {self.min_frames}")
        if not self.mixup >= 0:
            raise ConfigError(f"mixup={self.mixup} must be >= 0 (Beta alpha; 0 disables)")
        if not 0 < self.width <= 8:
            raise ConfigError(f"width={self.width} must be in (0, 8] (channel multiplier)")

    def _before_training(self, X: np.ndarray | list[np.ndarray], train_idx: np.ndarray) -> None:
        # Crop to crop_frames, but not (much) longer than a typical training clip: tiling every
        # short clip up to a long crop would train mostly on repeats.
        median = int(np.median([X[i].shape[1] for i in train_idx]))
        self.train_frames_ = int(min(int(self.crop_frames), max(self.min_frames, median)))

    def _train_batch(
        self, X: np.ndarray | list[np.ndarray], idx: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        length = self.train_frames_
        out = np.empty((len(idx), self.n_features_in_, length), dtype=np.float32)
        for k, i in enumerate(idx):
            clip = _tile_to(X[i], length + 1) if X[i].shape[1] < length else X[i]
            start = int(rng.integers(0, clip.shape[1] - length + 1))
            crop = clip[:, start : start + length]
            if self.spec_augment:
                crop = spec_augment(crop, rng, fill=self.mean_)
            out[k] = crop
        return out


class CNN2DClassifier(_FrameClassifier):
    """Small 2-D CNN on log-mel frames: 4 blocks (32-64-128-128, BN, ReLU, 2x2 max pooling),
    then global average + max pooling over time -> linear. Needs ``T >= 16`` frames (shorter
    clips are tiled at predict time)."""

    def __init__(
        self,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 10,
        dropout: float = 0.3,
        val_fraction: float = 0.15,
        crop_frames: int = 300,
        spec_augment: bool = True,
        mixup: float = 0.0,
        width: float = 1.0,
        class_weight: str | None = None,
        seed: int = 0,
        threads: int = 1,
        verbose: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.crop_frames = crop_frames
        self.spec_augment = spec_augment
        self.mixup = mixup
        self.width = width
        self.class_weight = class_weight
        self.seed = seed
        self.threads = threads
        self.verbose = verbose
        self.progress = progress

    @property
    def min_frames(self) -> int:
        return 16  # four time poolings by 2

    def _build_net(self, mean: np.ndarray, std: np.ndarray, n_classes: int) -> Any:
        return _modules().CNN2DNet(mean, std, n_classes, float(self.dropout), width=float(self.width))


class CRNNClassifier(_FrameClassifier):
    """Conv blocks (frequency pooled 8x, time 4x) -> bidirectional GRU or LSTM (``rnn``) ->
    ``"attention"`` or ``"mean"`` pooling over time (``pooling``) -> linear.
    ``rnn_hidden`` units per direction. Needs ``T >= 4`` frames."""

    def __init__(
        self,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 10,
        dropout: float = 0.3,
        val_fraction: float = 0.15,
        crop_frames: int = 300,
        spec_augment: bool = True,
        mixup: float = 0.0,
        rnn: str = "gru",
        rnn_hidden: int = 128,
        pooling: str = "attention",
        width: float = 1.0,
        class_weight: str | None = None,
        seed: int = 0,
        threads: int = 1,
        verbose: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.crop_frames = crop_frames
        self.spec_augment = spec_augment
        self.mixup = mixup
        self.rnn = rnn
        self.rnn_hidden = rnn_hidden
        self.pooling = pooling
        self.width = width
        self.class_weight = class_weight
        self.seed = seed
        self.threads = threads
        self.verbose = verbose
        self.progress = progress

    @property
    def min_frames(self) -> int:
        return 4  # two time poolings by 2

    def _check_params(self) -> None:
        super()._check_params()
        if self.rnn not in ("gru", "lstm"):
            raise ConfigError(f"rnn={self.rnn!r} must be 'gru' or 'lstm'")
        if self.pooling not in ("attention", "mean"):
            raise ConfigError(f"pooling={self.pooling!r} must be 'attention' or 'mean'")
        h = self.rnn_hidden
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
            raise ConfigError(f"rnn_hidden={h!r} must be an integer >= 1")

    def _build_net(self, mean: np.ndarray, std: np.ndarray, n_classes: int) -> Any:
        return _modules().CRNNNet(
            mean,
            std,
            n_classes,
            float(self.dropout),
            rnn=self.rnn,
            hidden=int(self.rnn_hidden),
            pooling=self.pooling,
            width=float(self.width),
        )
