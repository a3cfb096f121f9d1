"""Request bodies read under a size cap *while streaming* (FastAPI-free: plain ASGI/Starlette).

The cap is checked against ``Content-Length`` first and then on every chunk received, so an
oversized body is refused after at most ``limit`` bytes were read, never buffered whole.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.types import Message

from vocalis.service.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    ServiceError,
    UnsupportedMediaTypeError,
)

MULTIPART_OVERHEAD = 64 * 1024
"""Room for the multipart envelope (boundaries, part headers) above the file limit."""

AUDIO_TYPES = ("audio/", "video/webm", "video/ogg", "video/mp4", "application/ogg", "application/octet-stream")
EVIDENCE_TYPES = ("audio/", "video/", "application/octet-stream")


def media_type(content_type: str | None) -> str:
    """``"audio/wav; rate=1"`` -> ``"audio/wav"``."""
    return (content_type or "").split(";")[0].strip().lower()


def check_media_type(content_type: str | None, allowed: tuple[str, ...], what: str) -> str:
    """The media type if it starts with one of ``allowed``, else :class:`UnsupportedMediaTypeError`."""
    mt = media_type(content_type)
    if not mt or not any(mt.startswith(a) for a in allowed):
        raise UnsupportedMediaTypeError(
            f"content_type={mt or '(none)'!r} must be one of {', '.join(a + ('*' if a.endswith('/') else '') for a in allowed)} "
            f"for {what} (or multipart/form-data with a 'file' field)"
        )
    return mt


def _too_large(limit: int, what: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"{what} is larger than max_bytes={limit}; upload at most {limit} bytes")


def _check_declared(request: Request, limit: int, what: str) -> None:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise InvalidInputError(f"content-length={declared!r} must be an integer") from None
        if n > limit:
            raise _too_large(limit, what)


async def limited_stream(request: Request, limit: int, what: str = "body") -> AsyncIterator[bytes]:
    """The raw body in chunks; :class:`PayloadTooLargeError` once more than ``limit`` bytes arrived."""
    _check_declared(request, limit, what)
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit, what)
        if chunk:
            yield chunk


def limited_request(request: Request, limit: int, what: str = "body") -> Request:
    """A copy of ``request`` whose ASGI ``receive`` raises once more than ``limit`` body bytes arrived."""
    _check_declared(request, limit, what)
    total = 0
    receive = request.receive

    async def counted() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise _too_large(limit, what)
        return message

    return Request(request.scope, counted)


async def multipart_file(request: Request, limit: int, field: str = "file", what: str = "upload", *,
                         in_memory: bool = False) -> UploadFile:
    """Parse a multipart body under the cap and return its ``field`` file part.

    ``in_memory`` keeps the part in memory whatever its size (Starlette spools parts over 1 MiB
    to a temporary file): audio to analyse never touches the disk.
    """
    req = limited_request(request, limit + MULTIPART_OVERHEAD, what)
    if in_memory:
        parser = MultiPartParser(req.headers, req.stream(), max_files=1, max_fields=20)
        parser.spool_max_size = limit + MULTIPART_OVERHEAD + 1  # never rolls over to disk
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise ServiceError(f"multipart body is malformed: {e.message}") from None
    else:
        form = await req.form(max_files=1, max_fields=20)
    part = form.get(field)
    if part is None or isinstance(part, str):
        raise InvalidInputError(f"multipart field {field!r} is required and must be a file")
    if part.size is not None and part.size > limit:
        raise _too_large(limit, what)
    return part


async def read_audio_body(request: Request, limit: int) -> tuple[bytes, str]:
    """The audio bytes and media type of a multipart (``file`` field) or raw ``audio/*`` request."""
    ctype = media_type(request.headers.get("content-type"))
    if ctype == "multipart/form-data":
        part = await multipart_file(request, limit, what="audio upload", in_memory=True)
        mt = check_media_type(part.content_type or "application/octet-stream", AUDIO_TYPES, "the 'file' part")
        data = await part.read()
        await part.close()
        return data, mt
    mt = check_media_type(ctype, AUDIO_TYPES, "audio")
    chunks = [c async for c in limited_stream(request, limit, "audio upload")]
    return b"".join(chunks), mt


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size: int
    sha256: str
    content_type: str


async def store_body(request: Request, dest_dir: Path, name: str, limit: int) -> StoredFile:
    """Stream a multipart ``file`` or raw ``audio/*``/``video/*`` body to ``dest_dir/name``.

    The file is written to a temporary name while hashing and renamed only when complete;
    an oversized or broken upload leaves nothing behind.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".upload-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            ctype = media_type(request.headers.get("content-type"))
            if ctype == "multipart/form-data":
                part = await multipart_file(request, limit, what="evidence upload")
                mt = check_media_type(part.content_type or "application/octet-stream", EVIDENCE_TYPES,
                                      "the 'file' part")
                while chunk := await part.read(1024 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit, "evidence upload")
                    digest.update(chunk)
                    out.write(chunk)
                await part.close()
            else:
                mt = check_media_type(ctype, EVIDENCE_TYPES, "evidence")
                async for chunk in limited_stream(request, limit, "evidence upload"):
                    size += len(chunk)
                    digest.update(chunk)
                    out.write(chunk)
        if size == 0:
            raise InvalidInputError("evidence upload is empty (0 bytes)")
        final = dest_dir / name
        tmp.replace(final)
        return StoredFile(final, size, digest.hexdigest(), mt)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
