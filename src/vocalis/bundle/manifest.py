"""The bundle manifest: everything needed to rebuild feature extraction and read the model's output."""

from __future__ import annotations

import datetime as _dt
import hashlib
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


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    ``calibration`` may hold ``{"temperature": T}`` applied to the log-probabilities.
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
        labels = data["labels"]
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise ModelError(f"{source}: labels={labels!r} must be a list of at least 2 strings")
        if len(set(labels)) != len(labels):
            raise ModelError(f"{source}: labels={labels!r} must be unique")
        if data.get("input_kind", "vector") not in ("vector", "frames"):
            raise ModelError(f"{source}: input_kind={data.get('input_kind')!r} must be 'vector' or 'frames'")
        return cls(**{k: v for k, v in data.items() if k in known})
