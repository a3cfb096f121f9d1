"""Graceful shutdown of a real ``vocalis serve`` process (uvicorn on 127.0.0.1, a free port).

SIGTERM must close live streams with 1001 (after an ``error {code: "going_away"}``), confirm a
countdown nobody can cancel any more, flush the outbox (a delivery waiting out a long backoff is
attempted at once) and lose no alert: every alert reaches the local webhook receiver, and the
database left behind says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from tests.service.fakes import WebhookReceiver, free_port
from vocalis.storage.tables import Alert, Delivery

websockets = pytest.importorskip("websockets.sync.client", reason="needs the websockets client (uvicorn[standard])")

HELPER = Path(__file__).with_name("serve_fake_predictor.py")
ROOT = Path(__file__).resolve().parents[2]


def pcm(seconds: float, amplitude: float, sr: int = 16_000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * 330 * t) * 32767).astype("<i2").tobytes()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "VOCALIS_DATA_DIR": str(tmp_path / "data"),
        "VOCALIS_SECRET_KEY": "shutdown-test-secret",
        "VOCALIS_PRELOAD_MODEL": "false",
        "VOCALIS_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on 127.0.0.1
        "VOCALIS_RELAY_POLL_SECONDS": "3600",  # only wake() (a new alert) and the shutdown flush deliver
        "VOCALIS_RELAY_BACKOFF_BASE_SECONDS": "600",  # a failed delivery is not retried before the shutdown
        "VOCALIS_RELAY_BACKOFF_MAX_SECONDS": "1200",
        "VOCALIS_STREAM_COUNTDOWN_S": "60",  # longer than the grace: the shutdown must confirm it
        "VOCALIS_STREAM_SHUTDOWN_GRACE_S": "1.5",
        "VOCALIS_STREAM_BURST_S": "6",
        "VOCALIS_STREAM_IDLE_TIMEOUT_S": "60",
    }
    proc = subprocess.Popen([sys.executable, str(HELPER), "--port", str(port), "--log-level", "info"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1.0)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.communicate(timeout=5)[0] if proc.poll() is not None else ""
                proc.kill()
                pytest.fail(f"server did not start: {out[-3000:]}")
            time.sleep(0.1)
    try:
        yield proc, base, tmp_path / "data" / "vocalis.db"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _recv_until(sock: Any, kind: str, limit: int = 200) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen = []
    for _ in range(limit):
        msg = json.loads(sock.recv(timeout=20))
        if msg["type"] == kind:
            return msg, seen
        seen.append(msg)
    raise AssertionError(f"no {kind!r} in {[m['type'] for m in seen]}")


def _until_closed(sock: Any) -> tuple[list[dict[str, Any]], int | None]:
    from websockets.exceptions import ConnectionClosed

    seen = []
    try:
        for _ in range(500):
            seen.append(json.loads(sock.recv(timeout=30)))
    except ConnectionClosed as e:
        return seen, (e.rcvd.code if e.rcvd is not None else None)
    raise AssertionError("the stream was not closed")


@pytest.mark.timeout(120)
def test_sigterm_closes_streams_1001_flushes_the_outbox_and_loses_no_alert(
    server: tuple[subprocess.Popen[str], str, Path], receiver: WebhookReceiver,
) -> None:
    proc, base, db = server
    http = httpx.Client(base_url=base, timeout=10)
    r = http.post("/v1/users", json={"email": "ann@example.org", "password": "correct horse", "name": "Ann"})
    assert r.status_code == 201, r.text
    key = r.json()["api_key"]["key"]
    auth = {"Authorization": f"Bearer {key}"}
    r = http.post("/v1/contacts", headers=auth, json={"name": "Mum", "webhook_url": receiver.url})
    assert r.status_code == 201, r.text

    # 1. a panic alert whose first delivery fails: it waits out a 10-minute backoff in the outbox
    receiver.statuses.append(503)
    backing_off = http.post("/v1/alerts", headers=auth, json={"reason": "panic button"}).json()["id"]
    deadline = time.monotonic() + 10
    while True:  # claimed (attempts=1, sending), sent, answered 503, recorded: pending again
        d = http.get(f"/v1/alerts/{backing_off}", headers=auth).json()["deliveries"][0]
        if d["attempts"] == 1 and d["status"] == "pending":
            break
        assert time.monotonic() < deadline, f"the first attempt was never recorded: {d}"
        time.sleep(0.05)
    assert len(receiver.received) == 1, http.get(f"/v1/alerts/{backing_off}", headers=auth).json()

    # 2. a live stream in a countdown (60 s: longer than the 1.5 s grace), 3. an idle live stream
    ws_url = base.replace("http://", "ws://") + f"/v1/stream?token={key}"
    with websockets.connect(ws_url + "&encoding=pcm16&sample_rate=16000") as counting, \
            websockets.connect(ws_url) as idle:
        _recv_until(counting, "session.created")
        _recv_until(idle, "session.created")
        counting.send(pcm(2.0, 0.5))
        countdown, _ = _recv_until(counting, "countdown")
        in_countdown = countdown["alert_id"]

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        msgs, code = _until_closed(counting)
        idle_msgs, idle_code = _until_closed(idle)

    assert code == 1001 and idle_code == 1001
    for seen in (msgs, idle_msgs):
        assert seen and seen[-1]["type"] == "error" and seen[-1]["code"] == "going_away", seen[-3:]
    alert = next(m for m in msgs if m["type"] == "alert")
    assert alert["alert_id"] == in_countdown and "shutting down" in alert["reason"]
    assert time.monotonic() - t0 < 10

    out = proc.communicate(timeout=60)[0]
    assert proc.returncode in (0, -signal.SIGTERM), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "/v1/stream?token=***" in out and key not in out  # the API key in the URL is not logged

    # every alert reached the receiver: the backing-off one by the shutdown flush
    delivered = [json.loads(r.body)["data"]["alert_id"] for r in receiver.received]
    assert sorted(delivered) == sorted([backing_off, backing_off, in_countdown]), delivered
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        alerts = {a.id: a.status for a in s.scalars(select(Alert))}
        deliveries = [(d.alert_id, d.status, d.attempts) for d in s.scalars(select(Delivery))]
    engine.dispose()
    assert alerts == {backing_off: "delivered", in_countdown: "delivered"}
    assert sorted(deliveries) == sorted([(backing_off, "sent", 2), (in_countdown, "sent", 1)])
