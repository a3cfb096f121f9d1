"""Danger detection: scream/shout detector, calls for help, and the alerting policy.

* :mod:`vocalis.danger.detector` — the two-stage scream detector every face uses;
* :mod:`vocalis.danger.train` — builds its bundles (``data/scream.vocalis``, ``data/scream_confirm.vocalis``) and,
  optionally, a scream head on the emotion model's embedding (:func:`~vocalis.danger.train.train_backbone_scream_head`);
* :mod:`vocalis.danger.keywords` — "help" / "bachao" spotting on an ASR transcript;
* :mod:`vocalis.danger.policy` — :class:`DangerPolicy`, a pure state machine turning window
  scores into events (it never sends anything);
* :mod:`vocalis.danger.monitor` — file / microphone monitoring loops for the CLI.

Importing this package is light (no models are loaded).
"""

from __future__ import annotations

from pathlib import Path


def scream_model_path() -> Path:
    """The scream detector bundle shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "data" / "scream.vocalis"


__all__ = ["scream_model_path"]
