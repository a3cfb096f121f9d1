"""The HTTP service (FastAPI): ``create_app(settings)``, ``Settings`` and ``main()``.

Needs the ``serve`` extra: ``pip install 'vocalis[serve]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app", "main"]


def __getattr__(name: str) -> Any:
    # lazy: importing vocalis.service (e.g. for Settings) does not import FastAPI
    if name in ("create_app", "main"):
        from vocalis.errors import require

        require("fastapi", "serve")
        from vocalis.service import app

        return getattr(app, name)
    if name == "Settings":
        from vocalis.service.settings import Settings

        return Settings
    raise AttributeError(name)
