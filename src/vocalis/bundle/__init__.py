"""One bundle format (zip: ``manifest.json`` + ``model.onnx``), one loader, onnxruntime only."""

from vocalis.bundle.manifest import Manifest
from vocalis.bundle.runtime import (
    Bundle,
    Prediction,
    default_model_path,
    load_bundle,
    pack_bundle,
    save_bundle,
)

__all__ = ["Bundle", "Manifest", "Prediction", "default_model_path", "load_bundle", "pack_bundle", "save_bundle"]
