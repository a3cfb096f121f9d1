"""Local stand-ins for the outside world: a fake Twilio REST API, a webhook receiver, an SMTP sink.

All are real servers on 127.0.0.1 (port 0), so the production code paths (the twilio SDK, httpx,
smtplib) run unchanged.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)


class FakeTwilio:
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` and ``/Calls.json`` like Twilio's.

    * checks HTTP basic auth against ``account_sid``/``auth_token``;
    * honours ``I-Twilio-Idempotency-Token``: the same token returns the same sid and creates nothing;
    * :meth:`inject` queues faults for the next requests: an HTTP status (429, 500, 400, ...) or
      ``("delay", seconds)`` which sleeps and *then processes the request normally* (the client has
      timed out by then, as when a real provider is slow).
    """

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "secret-token") -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.requests: list[RecordedRequest] = []
        self.created: list[dict[str, Any]] = []  # the messages and calls actually "sent"
        self._by_token: dict[str, dict[str, Any]] = {}
        self._faults: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._n = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def inject(self, *faults: int | tuple[str, float]) -> None:
        with self._lock:
            for f in faults:
                self._faults.append(("status", float(f)) if isinstance(f, int) else f)

    def start(self) -> FakeTwilio:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [c for c in self.created if c["kind"] == "Messages"]

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.created if c["kind"] == "Calls"]

    def _handle(self, h: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length)
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        req = RecordedRequest(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body, form)
        with self._lock:
            self.requests.append(req)
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None and fault[0] == "status":
            status = int(fault[1])
            return status, {"code": 20000 + status, "message": f"injected {status}", "status": status}
        if fault is not None and fault[0] == "delay":
            time.sleep(fault[1])
        want = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if req.headers.get("authorization") != want:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        parts = h.path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["2010-04-01", "Accounts"] or parts[3] not in ("Messages.json", "Calls.json"):
            return 404, {"code": 20404, "message": "not found", "status": 404}
        if parts[2] != self.account_sid:
            return 403, {"code": 20403, "message": "wrong account", "status": 403}
        kind = parts[3].removesuffix(".json")
        if not form.get("To", "").startswith("+") or not form.get("From"):
            return 400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}
        token = req.headers.get("i-twilio-idempotency-token")
        with self._lock:
            if token and token in self._by_token:
                return 201, self._by_token[token]
            self._n += 1
            sid = ("SM" if kind == "Messages" else "CA") + f"{self._n:032x}"
            payload = {"sid": sid, "account_sid": self.account_sid, "to": form["To"], "from": form["From"],
                       "status": "queued", "body": form.get("Body"), "twiml": form.get("Twiml")}
            self.created.append({"kind": kind, "token": token, **payload})
            if token:
                self._by_token[token] = payload
        return 201, payload

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    status, payload = fake._handle(self)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): fine

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class WebhookReceiver:
    """Records POSTs; answers with queued statuses (default 200)."""

    def __init__(self) -> None:
        self.received: list[RecordedRequest] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.received.append(
                    RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def fake_twilio(**kw: Any) -> Iterator[FakeTwilio]:
    fake = FakeTwilio(**kw).start()
    try:
        yield fake
    finally:
        fake.stop()


@contextmanager
def smtp_sink() -> Iterator[tuple[int, list[Any]]]:
    """An aiosmtpd server on 127.0.0.1; yields (port, received envelopes)."""
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()
