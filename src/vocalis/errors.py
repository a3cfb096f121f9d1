"""The one exception tree of Vocalis.

::

    VocalisError
    ├── AudioError      undecodable, empty, non-finite, too long or badly sampled audio
    ├── DataError       corpus folders, manifests, labels, splits
    ├── ModelError      bundles: missing, tampered, incompatible; untrained models
    ├── ConfigError     invalid options and feature/recipe configurations
    ├── NotifyError     a delivery to a contact failed (``retryable`` says whether to try again)
    └── DependencyError an optional extra is not installed (message has the install hint)

Messages follow ``name=value must be ...`` so a user sees the offending value and the rule.
The library raises; only the CLI turns these into clean messages and exit codes.
"""

from __future__ import annotations


class VocalisError(Exception):
    """Base class of every error Vocalis raises on purpose."""


class AudioError(VocalisError):
    """Audio could not be decoded or breaks a rule (empty, non-finite, too long, bad rate)."""


class DataError(VocalisError):
    """A corpus, manifest, label or split is unusable."""


class ModelError(VocalisError):
    """A model bundle is missing, tampered with, incompatible or cannot run."""


class ConfigError(VocalisError):
    """An option or configuration value is invalid."""


class NotifyError(VocalisError):
    """A delivery failed. ``retryable`` says whether the relay should try again later."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class DependencyError(VocalisError):
    """An optional dependency is missing; the message says which extra to install."""


def require(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`DependencyError` with the pip hint for ``extra``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DependencyError(
            f"{module} is not installed; install it with: pip install 'vocalis[{extra}]'"
        ) from e
