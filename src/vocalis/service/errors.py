"""Service errors (FastAPI-free) and the HTTP status and code each error maps to.

::

    VocalisError
    └── ServiceError            400 bad_request
        ├── AuthError           401 unauthorized
        ├── NotFoundError       404 not_found (also for another user's ids: existence is not leaked)
        ├── ConflictError       409 conflict (e.g. cancelling a confirmed alert)
        ├── PayloadTooLargeError 413 payload_too_large
        ├── UnsupportedMediaTypeError 415 unsupported_media_type
        └── InvalidInputError   422 validation_error

Library errors map too: AudioError 400 ``invalid_audio``, ConfigError/DataError 400,
ModelError 503 ``model_unavailable``, DependencyError 503, any other VocalisError 400.
"""

from __future__ import annotations

from collections.abc import Sequence

from vocalis.errors import AudioError, ConfigError, DataError, DependencyError, ModelError, VocalisError


class ServiceError(VocalisError):
    """An error the service answers with a 4xx JSON body ``{"error": {"code", "message"}}``."""

    status_code = 400
    code = "bad_request"


class AuthError(ServiceError):
    status_code = 401
    code = "unauthorized"


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


class PayloadTooLargeError(ServiceError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidInputError(ServiceError):
    status_code = 422
    code = "validation_error"


def field_message(loc: Sequence[object], msg: str) -> str:
    """``field: rule`` for one validation error; the rule alone when it is about the whole body.

    >>> field_message(["location", "accuracy_m"], "Input should be a finite number")
    'location.accuracy_m: Input should be a finite number'
    >>> field_message([], "Value error, channels=[] must name at least one way to notify")
    'channels=[] must name at least one way to notify'
    """
    return (f"{'.'.join(str(p) for p in loc)}: " if loc else "") + msg.removeprefix("Value error, ")


def status_and_code(exc: VocalisError) -> tuple[int, str]:
    """The HTTP status and error code for any :class:`VocalisError`."""
    if isinstance(exc, ServiceError):
        return exc.status_code, exc.code
    if isinstance(exc, AudioError):
        return 400, "invalid_audio"
    if isinstance(exc, (ModelError, DependencyError)):
        return 503, "model_unavailable" if isinstance(exc, ModelError) else "dependency_missing"
    if isinstance(exc, (ConfigError, DataError)):
        return 400, "invalid_input"
    return 400, "bad_request"
