"""Load and run a bundle with onnxruntime only (no torch, no scikit-learn, no pickle)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.audio.constants import DEFAULT_MAX_DURATION_S, SAMPLE_RATE
from vocalis.audio.io import Source, check_audible, load_audio, resample, validate
from vocalis.audio.vad import SpeechPresence, speech_presence
from vocalis.bundle.manifest import (
    DIGEST_FIELD,
    INPUT_NAME,
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    Manifest,
    manifest_digest,
    sha256_hex,
)
from vocalis.errors import ConfigError, ModelError, VocalisError
from vocalis.features.base import FeatureExtractor, from_config
from vocalis.labels import valence_arousal

MAX_BUNDLE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Prediction:
    """One clip's result: the argmax label, all class probabilities, valence and arousal, and
    whether the clip held speech at all (``speech``; None where it was not checked).

    The model labels whatever it is given: on a clip with no speech (noise, a tone, music, a
    scream) the label is a guess, and ``speech.detected`` says so.
    """

    label: str
    probabilities: dict[str, float]
    valence: float
    arousal: float
    speech: SpeechPresence | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "valence": self.valence,
            "arousal": self.arousal,
            "speech": None if self.speech is None else self.speech.to_dict(),
        }


def default_model_path() -> Path:
    """The default model shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "data" / "default.vocalis"


class Bundle:
    """A loaded model bundle: feature extractor + ONNX session + labels.

    Use :func:`load_bundle`; do not construct directly.
    """

    def __init__(self, manifest: Manifest, onnx_bytes: bytes, source: str, threads: int = 1) -> None:
        self.manifest = manifest
        self.source = source
        self._onnx = onnx_bytes
        self._threads = threads
        manifest.check(source)  # load_bundle has checked it; a Manifest built in code has not
        try:
            self.extractor: FeatureExtractor = from_config(manifest.features)
        except (ConfigError, TypeError) as e:
            raise ModelError(f"{source}: feature config cannot be rebuilt: {e}") from e
        if self.extractor.output != manifest.input_kind:
            raise ModelError(
                f"{source}: extractor output={self.extractor.output!r} does not match input_kind={manifest.input_kind!r}"
            )

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    @cached_property
    def session(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(self._onnx, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"{self.source}: ONNX graph cannot be loaded: {e}") from e
        outputs = {o.name: o for o in sess.get_outputs()}
        if OUTPUT_NAME not in outputs:
            raise ModelError(f"{self.source}: ONNX graph has outputs {list(outputs)}; it must have {OUTPUT_NAME!r}")
        # the graph's declared output shape, e.g. [None, 8]: a static class count must match the labels
        shape = outputs[OUTPUT_NAME].shape
        k = len(self.manifest.labels)
        if isinstance(shape, list) and shape and (
            len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != k)
        ):
            raise ModelError(
                f"{self.source}: ONNX output {OUTPUT_NAME!r} shape={shape} must be [batch, {k}]: "
                f"one column per label of the manifest (labels={self.manifest.labels})"
            )
        return sess

    def features(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        return np.asarray(self.extractor(audio, sample_rate), dtype=np.float32)

    def features_batch(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """``(N, ...)`` features of ``audios``: :meth:`features` of each, in one batched call per window
        length when the extractor has ``batch`` (:meth:`vocalis.features.classic.ClassicFeatures.batch`)."""
        if not len(audios):
            raise ConfigError("features_batch: audios must hold at least one window")
        batch = getattr(self.extractor, "batch", None)
        if batch is None:
            return np.stack([self.features(a, sample_rate) for a in audios])
        by_len: dict[int, list[int]] = {}
        for i, a in enumerate(audios):
            by_len.setdefault(int(np.asarray(a).size), []).append(i)
        out: np.ndarray | None = None
        for idx in by_len.values():
            f = np.asarray(batch(np.stack([audios[i] for i in idx]), sample_rate), dtype=np.float32)
            if out is None:
                out = np.empty((len(audios), *f.shape[1:]), np.float32)
            out[idx] = f
        assert out is not None
        return out

    def predict_proba_features(self, feats: np.ndarray) -> np.ndarray:
        """``(N, K)`` probabilities from a batch of features (``(N, D)`` or ``(N, C, T)``)."""
        x = np.ascontiguousarray(feats, dtype=np.float32)
        try:
            (p,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        except VocalisError:
            raise
        except Exception as e:
            raise ModelError(f"{self.source}: inference failed for input shape {x.shape}: {e}") from e
        p = np.asarray(p, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.labels):
            raise ModelError(
                f"{self.source}: model output shape {p.shape} does not match {len(self.labels)} labels"
            )
        t = float(self.manifest.calibration.get("temperature", 1.0))
        if t != 1.0:
            logp = np.log(np.clip(p, 1e-12, 1.0)) / t
            logp -= logp.max(axis=1, keepdims=True)
            p = np.exp(logp)
        p = np.clip(p, 0.0, None)
        return p / p.sum(axis=1, keepdims=True)

    def predict_proba(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        x = validate(audio, sample_rate, max_duration=None)
        return self.predict_proba_features(self.features(x, sample_rate)[None])[0]

    def predict(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, name: str = "audio",
                speech: bool = True) -> Prediction:
        """Predict one float32 mono clip; a clip with no audible sound (its loudest 32 ms below
        :data:`~vocalis.audio.constants.AUDIBLE_DBFS`) is an :class:`AudioError`, not a label.

        With ``speech`` (default) the clip's voice activity is checked too (Silero VAD when
        installed, ~0.1 ms per 32 ms of audio) and reported in :attr:`Prediction.speech`.
        """
        x = check_audible(validate(audio, sample_rate, name=name, max_duration=None), name)
        pred = self.prediction_from_proba(self.predict_proba_features(self.features(x, sample_rate)[None])[0])
        if not speech:
            return pred
        x16 = x if sample_rate == SAMPLE_RATE else resample(x, sample_rate, SAMPLE_RATE)
        return replace(pred, speech=speech_presence(x16, SAMPLE_RATE))

    def predict_file(self, source: Source, *, max_duration: float | None = DEFAULT_MAX_DURATION_S,
                     speech: bool = True) -> Prediction:
        name = str(source) if isinstance(source, (str, Path)) else "audio"
        return self.predict(load_audio(source, SAMPLE_RATE, max_duration=max_duration), SAMPLE_RATE, name=name,
                            speech=speech)

    def prediction_from_proba(self, proba: np.ndarray, restrict: list[str] | None = None) -> Prediction:
        labels = self.labels
        p = np.asarray(proba, dtype=np.float64)
        if restrict is not None:
            keep = [i for i, lab in enumerate(labels) if lab in set(restrict)]
            labels = [labels[i] for i in keep]
            p = p[keep] / max(p[keep].sum(), 1e-12)
        probs = {lab: round(float(v), 6) for lab, v in zip(labels, p)}
        v, a = valence_arousal(dict(zip(labels, p.tolist())))
        return Prediction(labels[int(np.argmax(p))], probs, round(v, 6), round(a, 6))


def pack_bundle(manifest: Manifest, onnx_bytes: bytes) -> bytes:
    """Serialise a bundle (zip with ``manifest.json`` and ``model.onnx``).

    Records the sha256 of ``model.onnx`` in ``manifest.files`` and then the digest of the whole
    manifest (:func:`~vocalis.bundle.manifest.manifest_digest`) in ``manifest.manifest_sha256``;
    :func:`load_bundle` checks both. Raises :class:`ModelError` for a manifest that breaks a rule.
    """
    manifest.check("pack_bundle")
    manifest.files = {MODEL_FILE: {"sha256": sha256_hex(onnx_bytes), "bytes": len(onnx_bytes)}}
    manifest.manifest_sha256 = ""
    # the digest is taken over the manifest as load_bundle will read it back (a JSON round trip)
    manifest.manifest_sha256 = manifest_digest(json.loads(json.dumps(manifest.to_dict())))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST_FILE, json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
        z.writestr(MODEL_FILE, onnx_bytes)
    return buf.getvalue()


def save_bundle(path: str | Path, manifest: Manifest, onnx_bytes: bytes) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(pack_bundle(manifest, onnx_bytes))
    tmp.replace(p)
    return p


def load_bundle(path: str | Path | None = None, *, threads: int = 1) -> Bundle:
    """Load a bundle file (``None`` = the bundled default) and verify it.

    Raises :class:`ModelError` for a missing, corrupt, tampered or incompatible bundle: a manifest
    field breaking its rule, a ``model.onnx`` whose sha256 differs from the recorded one, a
    manifest edited after packing (its ``manifest_sha256`` differs; bundles packed before that
    field existed have none and are not checked for it), or an ONNX graph that cannot be loaded
    or whose output size differs from the number of labels (the session is built here).
    """
    p = default_model_path() if path is None else Path(path)
    src = str(p)
    if not p.is_file():
        hint = " (the default model is missing from this installation)" if path is None else ""
        raise ModelError(f"model={src} not found{hint}")
    if p.stat().st_size > MAX_BUNDLE_BYTES:
        raise ModelError(f"model={src} is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            for required in (MANIFEST_FILE, MODEL_FILE):
                if required not in names:
                    raise ModelError(f"model={src}: bundle lacks {required}")
            raw = json.loads(z.read(MANIFEST_FILE).decode("utf-8"))
            onnx_bytes = z.read(MODEL_FILE)
    except ModelError:
        raise
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"model={src} is not a Vocalis bundle (zip with manifest.json + model.onnx): {e}") from e
    manifest = Manifest.from_dict(raw, source=src)
    expected = manifest.files.get(MODEL_FILE, {}).get("sha256")
    if not expected:
        raise ModelError(f"model={src}: manifest has no sha256 for {MODEL_FILE}")
    actual = sha256_hex(onnx_bytes)
    if actual != expected:
        raise ModelError(f"model={src}: {MODEL_FILE} sha256={actual[:12]}… does not match the manifest ({expected[:12]}…); the bundle was altered")
    if DIGEST_FIELD in raw:  # absent from bundles packed before the manifest digest existed
        recorded, digest = raw[DIGEST_FIELD], manifest_digest(raw)
        if digest != recorded:
            raise ModelError(
                f"model={src}: {MANIFEST_FILE} digest={digest[:12]}… does not match its "
                f"{DIGEST_FIELD}={str(recorded)[:12]}…; the bundle was altered (a manifest field such as the "
                f"labels, features or calibration was edited after packing); re-export it with pack_bundle"
            )
    bundle = Bundle(manifest, onnx_bytes, src, threads=threads)
    bundle.session  # noqa: B018  (built now so a broken graph or a label-count mismatch fails here)
    return bundle
