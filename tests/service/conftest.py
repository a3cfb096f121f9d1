"""Service fixtures: an app on a fresh SQLite file per test, registered users, synthetic WAVs."""

from __future__ import annotations

import importlib.util
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from vocalis.service.settings import Settings

SERVE_MODULES = ("fastapi", "uvicorn", "pydantic_settings", "sqlalchemy", "alembic", "multipart",
                 "prometheus_client", "twilio", "httpx", "aiosmtpd")
MISSING = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
if MISSING:  # without the 'serve' extra these tests are not collected at all
    collect_ignore_glob = ["test_*.py"]

SR = 16_000


def wav_bytes(duration: float = 1.0, sr: int = SR, freq: float = 220.0) -> bytes:
    """A harmonic tone as 16-bit WAV bytes."""
    import soundfile as sf

    t = np.arange(int(duration * sr)) / sr
    x = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, 6))
    x = (0.3 * x / np.max(np.abs(x))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    from vocalis.service.settings import Settings

    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "secret_key": "test-secret-key",
        "relay_enabled": False,
        "preload_model": False,
    }
    base.update(overrides)
    return Settings(**base)


@dataclass
class Account:
    id: str
    email: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def register(client: TestClient, email: str = "ann@example.org", password: str = "correct horse",
             name: str | None = None) -> Account:
    r = client.post("/v1/users", json={"email": email, "password": password, "name": name})
    assert r.status_code == 201, r.text
    body = r.json()
    return Account(body["user"]["id"], body["user"]["email"], body["api_key"]["key"])


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build a started TestClient with settings overrides (closed at teardown)."""
    from fastapi.testclient import TestClient

    from vocalis.service.app import create_app

    clients: list[TestClient] = []

    def _make(notifiers: Any = None, **overrides: Any) -> TestClient:
        app = create_app(make_settings(tmp_path, **overrides), notifiers=notifiers)
        c = TestClient(app, raise_server_exceptions=False)
        c.__enter__()
        clients.append(c)
        return c

    yield _make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def ann(client: TestClient) -> Account:
    return register(client, "ann@example.org", name="Ann")


@pytest.fixture
def bob(client: TestClient) -> Account:
    return register(client, "bob@example.org", name="Bob")


def postgres_url() -> str | None:
    return os.environ.get("VOCALIS_TEST_POSTGRES_URL") or None
