"""Checks of CLI option values (typer callbacks) and the message for a file-system error.

Shared by every ``vocalis`` command module; a bad value is a usage error (exit 2) that names the
value and the rule, before any work starts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer


def os_message(e: OSError) -> str:
    """``path=... cannot be used: <reason>`` for a file-system error (no traceback).

    >>> os_message(FileExistsError(17, "File exists", "out"))
    "path='out' cannot be used: File exists"
    """
    reason = e.strerror or str(e) or type(e).__name__
    return f"path={str(e.filename)!r} cannot be used: {reason}" if e.filename is not None else reason


def positive_seconds(value: float) -> float:
    """Typer callback: a duration option must be a finite number of seconds > 0."""
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"{value} must be a finite number of seconds > 0")
    return value


def folds(value: int, *, allow_zero: bool = False) -> int:
    """Typer callback: cross-validation needs >= 2 folds (0 = skip, where ``allow_zero``)."""
    if value == 0 and allow_zero:
        return value
    if value < 2:
        raise typer.BadParameter(f"{value} must be >= 2 folds" + (" (or 0 to skip)" if allow_zero else ""))
    return value


def writable_file(path: Path | None) -> Path | None:
    """Typer callback for an output file: fail before any work when it cannot be written."""
    if path is None:
        return None
    if path.is_dir():
        raise typer.BadParameter(f"{str(path)!r} is a folder; give a file name")
    parent = path.parent
    if parent.exists() and (not parent.is_dir() or not os.access(parent, os.W_OK)):
        raise typer.BadParameter(f"{str(path)!r} cannot be written: {str(parent)!r} is not a writable folder")
    return path
