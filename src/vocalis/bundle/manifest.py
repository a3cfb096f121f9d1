"""The bundle manifest: everything needed to rebuild feature extraction and read the model's output."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import numbers
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from vocalis.audio.constants import SAMPLE_RATE
from vocalis.errors import ModelError

FORMAT = "vocalis-bundle"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
DIGEST_FIELD = "manifest_sha256"
"""The manifest's own integrity hash (see :func:`manifest_digest`); absent from bundles packed before it existed."""

_DICT_FIELDS = ("features", "recipe", "training", "metrics", "calibration", "versions", "files")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_digest(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of every manifest field except ``manifest_sha256`` itself.

    ``data`` is the manifest as it is stored (parsed ``manifest.json``), so the labels, feature
    config, calibration, metrics, recorded ``model.onnx`` sha256 and any other field are covered:
    editing any of them by hand breaks the check in :func:`vocalis.bundle.load_bundle`.
    Canonical = keys sorted, no whitespace, ASCII only.
    """
    body = {k: v for k, v in data.items() if k != DIGEST_FIELD}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return sha256_hex(canon.encode("ascii"))


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the model (recorded at export time)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("vocalis", "numpy", "onnx", "onnxruntime", "scikit-learn", "skl2onnx", "torch", "ctranslate2"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class Manifest:
    """``manifest.json`` of a bundle.

    ``features`` is the extractor config (:func:`vocalis.features.base.from_config` rebuilds it);
    ``input_kind`` is ``"vector"`` (``[N, D]``) or ``"frames"`` (``[N, C, T]``);
    ``metrics`` always carries the split they were measured on;
    ``calibration`` may hold ``{"temperature": T}`` (a finite number > 0) applied to the log-probabilities;
    ``files`` records the sha256 of ``model.onnx`` and ``manifest_sha256`` the digest of all the other
    fields (:func:`manifest_digest`); :func:`~vocalis.bundle.pack_bundle` fills both.
    """

    labels: list[str]
    features: dict[str, Any]
    input_kind: str = "vector"
    sample_rate: int = SAMPLE_RATE
    name: str = "vocalis-model"
    recipe: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    manifest_sha256: str = ""

    def check(self, source: str = "bundle") -> None:
        """Raise :class:`ModelError` when a field breaks its rule (labels, input kind, calibration)."""
        labels = self.labels
        if not isinstance(labels, (list, tuple)) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise ModelError(f"{source}: labels={labels!r} must be a list of at least 2 strings")
        if not all(x.strip() for x in labels):
            raise ModelError(f"{source}: labels={labels!r} must be non-empty strings")
        if len(set(labels)) != len(labels):
            dup = sorted({x for x in labels if labels.count(x) > 1})
            raise ModelError(f"{source}: labels={labels!r} must be unique ({dup} repeated)")
        if self.input_kind not in ("vector", "frames"):
            raise ModelError(f"{source}: input_kind={self.input_kind!r} must be 'vector' or 'frames'")
        for name in _DICT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ModelError(f"{source}: manifest {name}={value!r} must be a JSON object")
        if "temperature" in self.calibration:
            t = self.calibration["temperature"]
            ok = isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t) and t > 0
            if not ok:
                raise ModelError(
                    f"{source}: calibration temperature={t!r} must be a finite number > 0 "
                    f"(probabilities are softmax(log p / temperature))"
                )
        if not isinstance(self.manifest_sha256, str):
            raise ModelError(f"{source}: {DIGEST_FIELD}={self.manifest_sha256!r} must be a hex string")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "bundle") -> Manifest:
        if not isinstance(data, dict):
            raise ModelError(f"{source}: manifest must be a JSON object")
        if data.get("format") != FORMAT:
            raise ModelError(f"{source}: manifest format={data.get('format')!r} must be {FORMAT!r}")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelError(
                f"{source}: format_version={version!r} is not supported by this Vocalis "
                f"(reads versions <= {FORMAT_VERSION}); upgrade vocalis"
            )
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("labels", "features") if k not in data]
        if missing:
            raise ModelError(f"{source}: manifest lacks {missing}")
        manifest = cls(**{k: v for k, v in data.items() if k in known})
        manifest.check(source)
        return manifest
