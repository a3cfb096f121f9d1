"""End-to-end fixtures: the real app under uvicorn on 127.0.0.1 with a fake Twilio, and Chromium.

Needs Debian's ``/usr/bin/chromium`` and the ``playwright`` Python package (``scripts/browser.sh``
installs both; no browser is downloaded) and the scream corpus in ``../shared/data/screams``;
each test skips with the reason when one is missing.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("VOCALIS_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[2]
SCREAMS = Path(os.environ.get("VOCALIS_DATA", REPO.parent / "shared" / "data")) / "screams"
SERVE_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "twilio")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the web UI in a real Chromium (skipped without one)")


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (run scripts/browser.sh as root to install Debian's chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing (scripts/browser.sh installs it)"
    missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return f"the serve extra is missing ({', '.join(missing)})"
    if not (SCREAMS / "manifest.csv").is_file():
        return f"the scream corpus is absent ({SCREAMS})"
    return None


def corpus_wav(subset: str, n: int, out: Path, emotion: str | None = None) -> Path:
    """``n`` clips of ``subset`` (manifest column; of ``emotion`` when given) concatenated into a 16 kHz WAV.

    ``scream_call`` also holds calm calls that are danger only by their environment label: a test
    that needs screaming asks for ``emotion="fearful"``."""
    import soundfile as sf

    with (SCREAMS / "manifest.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["subset"] == subset and emotion in (None, r["emotion"])][:n]
    if len(rows) < n:
        pytest.skip(f"the scream corpus has {len(rows)} {subset!r} clips, need {n}")
    parts = []
    for r in rows:
        x, sr = sf.read(SCREAMS / r["path"], dtype="float32", always_2d=True)
        assert sr == 16000, f"{r['path']}: sample rate {sr}"
        parts.append(x.mean(axis=1))
    sf.write(out, np.concatenate(parts), 16000, subtype="PCM_16")
    return out


def screaming_wav(out: Path) -> Path:
    """Six screamed calls for help: the fearful ``scream_call`` clips, not the calm ones labelled danger
    only by their environment (the detector does not call a calm voice danger)."""
    return corpus_wav("scream_call", 6, out, emotion="fearful")


@dataclass
class LiveServer:
    url: str
    app: Any
    twilio: Any


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app (uvicorn, temp SQLite, relay on, Twilio -> fake server, 3 s countdown)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    import uvicorn

    from tests.service.conftest import make_settings
    from tests.service.fakes import FakeTwilio, free_port
    from vocalis.service.app import create_app
    from vocalis.service.ws import StreamSettings

    tmp = tmp_path_factory.mktemp("e2e")
    twilio = FakeTwilio().start()
    settings = make_settings(
        tmp, relay_enabled=True, relay_poll_seconds=0.2, preload_model=True,
        twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
        twilio_from_number="+15005550006", twilio_base_url=twilio.base_url,
    )
    app = create_app(settings)
    app.state.stream_settings = StreamSettings(countdown_s=3.0, asr="off", status_poll_s=0.3, history_every_s=5.0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="auto"))
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, twilio)
    finally:
        server.should_exit = True
        thread.join(10)
        twilio.stop()
