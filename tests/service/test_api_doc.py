"""``docs/api.md`` against the running server: it documents every HTTP operation and no other, every
field of every WebSocket message the server sends, every stream error code with its close code,
and the webhook body; its signature-checking snippet accepts what the server signs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import register
from tests.service.test_stream import FakePredictor, FakeWindow, pcm, recv_until, url
from vocalis.danger.policy import Event
from vocalis.notify import webhook
from vocalis.notify.base import AlertInfo, ContactInfo, DeliveryInfo, UserInfo, alert_payload
from vocalis.service import ws

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
STREAM_SRC = (ROOT / "src" / "vocalis" / "service" / "routes" / "stream.py").read_text(encoding="utf-8")
SERVER_SRC = STREAM_SRC + (ROOT / "src" / "vocalis" / "service" / "ws.py").read_text(encoding="utf-8") + \
    (ROOT / "src" / "vocalis" / "danger" / "policy.py").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:] if end < 0 else DOC[start:end]


def _json_examples(text: str) -> list[dict[str, Any]]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]


def _key(msg: dict[str, Any]) -> tuple[str, str | None]:
    return msg["type"], msg.get("code") if msg["type"] in ("warning", "error") else None


STREAM_DOC = _section("Live monitoring")
EXAMPLES = {_key(m): m for m in _json_examples(STREAM_DOC) if m["type"][0].islower()}  # server -> client


def test_every_http_operation_is_documented_and_nothing_else(client: TestClient) -> None:
    spec = client.app.openapi()  # type: ignore[attr-defined]
    served = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
    documented = {f"{m} {p}" for m, p in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", DOC)}
    assert served - documented == set(), "served but not in docs/api.md"
    assert documented - served == set(), "in docs/api.md but not served"


def test_every_message_type_the_server_sends_has_an_example() -> None:
    sent = set(re.findall(r'"type": "([a-z][a-z._]*)"', STREAM_SRC))
    assert sent - {t for t, _ in EXAMPLES} == set()
    warnings = set(re.findall(r'"type": "warning", "code": "([a-z_]+)"', STREAM_SRC))
    assert warnings and {("warning", c) for c in warnings} <= set(EXAMPLES)


def test_every_documented_field_is_one_the_server_can_send() -> None:
    event_fields = set(Event.__dataclass_fields__)  # the policy's events are sent as Event.to_dict()
    for (kind, _), example in EXAMPLES.items():
        for field in example:
            assert f'"{field}"' in SERVER_SRC or field in event_fields, \
                f"{kind}.{field} is documented but no server code sends it"


def test_every_stream_error_code_is_documented_with_its_close_code() -> None:
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_]+)` \| ([^|]*) \|", STREAM_DOC, re.M)}
    closing = re.findall(r'(?:_Closing|_fail)\(\s*ws\.(CLOSE_\w+), "([a-z_]+)"', STREAM_SRC)
    assert len(closing) >= 8
    for const, code in closing:
        assert code in rows, f"error code {code!r} is not in the table"
        assert str(getattr(ws, const)) in rows[code], f"{code}: close {getattr(ws, const)} not in {rows[code]!r}"
    for status, code in re.findall(r'_deny\(websocket, (\d+), "([a-z_]+)"', STREAM_SRC):
        assert code in rows and f"HTTP {status}" in rows[code]
    for code in re.findall(r'error_message\("([a-z_]+)"', STREAM_SRC):
        assert code in rows, f"error code {code!r} is not in the table"
    closes = {v for k, v in vars(ws).items() if k.startswith("CLOSE_")}
    for number in closes:
        assert str(number) in STREAM_DOC.split("Close codes:")[1].split("\n\n")[0]


@pytest.fixture
def stream_client(make_client: Callable[..., TestClient]) -> Iterator[tuple[TestClient, Any]]:
    client = make_client()
    acct = register(client)
    r = client.post("/v1/contacts", headers=acct.headers,
                    json={"name": "Mum", "phone": "+33612345678", "channels": ["sms"]})
    assert r.status_code == 201, r.text
    client.app.state.stream_settings = ws.StreamSettings(  # type: ignore[attr-defined]
        burst_s=6.0, idle_timeout_s=5.0, status_poll_s=0.05, status_watch_s=2.0, countdown_s=1.0)

    class HotPredictor(FakePredictor):  # the stream's usual level is very loud: mic_hot
        def _window(self, x: Any) -> FakeWindow:
            w = super()._window(x)
            w.level_ref_db = -10.0  # type: ignore[attr-defined]
            return w

    client.app.state.stream_predictor_factory = lambda config: HotPredictor()  # type: ignore[attr-defined]
    yield client, acct


def _session(client: TestClient, acct: Any, script: Callable[[Any, list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    with client.websocket_connect(url(acct)) as sock:
        script(sock, msgs)
    return msgs


def _take(sock: Any, msgs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    m, before = recv_until(sock, kind)
    msgs += [*before, m]
    return m


def test_every_field_the_server_sends_is_documented(stream_client: tuple[TestClient, Any]) -> None:
    """A real session (scripted predictor): every message and every field it carries is in the doc."""
    client, acct = stream_client

    def alerting(sock: Any, msgs: list[dict[str, Any]]) -> None:
        _take(sock, msgs, "session.created")
        sock.send_json({"type": "Cancel"})
        _take(sock, msgs, "error")
        sock.send_json({"type": "Location", "lat": 48.85, "lon": 2.35, "accuracy": 20})
        sock.send_bytes(pcm(3.0, 0.5))
        _take(sock, msgs, "alert")
        _take(sock, msgs, "alert.status")
        sock.send_bytes(pcm(2.25, 0.0))
        sock.send_json({"type": "CloseStream"})
        _take(sock, msgs, "finalized")

    def cancelling(sock: Any, msgs: list[dict[str, Any]]) -> None:
        _take(sock, msgs, "session.created")
        sock.send_bytes(pcm(1.5, 0.5))
        _take(sock, msgs, "countdown")
        sock.send_json({"type": "Cancel"})
        _take(sock, msgs, "cancelled")

    msgs = _session(client, acct, alerting) + _session(client, acct, cancelling)
    seen = {_key(m) for m in msgs}
    assert {("danger", None), ("countdown", None), ("alert", None), ("alert.status", None), ("cancelled", None),
            ("danger.ended", None), ("finalized", None), ("warning", "mic_hot"), ("error", "no_countdown"),
            ("prediction", None), ("session.created", None)} <= seen
    for m in msgs:
        example = EXAMPLES.get(_key(m))
        assert example is not None, f"no example of {_key(m)} in docs/api.md"
        assert set(m) <= set(example), f"{_key(m)}: {sorted(set(m) - set(example))} not documented"
        for field in ("deliveries", "data", "probabilities"):
            if isinstance(m.get(field), list) and m[field]:
                assert set(m[field][0]) == set(example[field][0]), f"{m['type']}.{field}[]"
            elif isinstance(m.get(field), dict) and field != "probabilities":
                assert set(m[field]) == set(example[field]), f"{m['type']}.{field}"


def _shape(x: Any) -> Any:
    return {k: _shape(v) for k, v in x.items()} if isinstance(x, dict) else None


def test_the_webhook_example_has_the_payloads_shape() -> None:
    created = datetime(2026, 11, 22, 10, 15, 3, tzinfo=timezone.utc)
    payload = alert_payload(
        DeliveryInfo("d1", "a1", "webhook", "a1:c1:webhook", 1),
        AlertInfo("a1", "stream", 0.95, "live stream: scream", created, 48.85, 2.35, 20.0),
        ContactInfo("c1", "Mum", webhook_url="https://hooks.example/x"), UserInfo("u1", "ann@example.org", "Ann"))
    [example] = _json_examples(_section("Webhooks"))
    assert _shape(example) == _shape(payload)
    assert example["type"] == payload["type"]


def test_the_docs_signature_check_accepts_what_the_server_signs() -> None:
    [snippet] = re.findall(r"```python\n(.*?)```", _section("Webhooks"), re.S)
    scope: dict[str, Any] = {}
    exec(compile(snippet, "docs/api.md", "exec"), scope)
    verify = scope["verify"]
    body = b'{"type":"alert.triggered","data":{}}'
    for secret in (webhook.new_secret(), "a plain shared secret"):
        ts = int(time.time())
        headers = {"Webhook-Id": "a1:c1:webhook", "Webhook-Timestamp": str(ts),
                   "Webhook-Signature": webhook.sign(secret, "a1:c1:webhook", ts, body)}
        assert verify(secret, headers, body)
        assert not verify(secret, headers, body + b" ")  # tampered
        assert not verify(webhook.new_secret(), headers, body)  # another key
        old = int(time.time()) - 3600
        assert not verify(secret, {**headers, "Webhook-Timestamp": str(old),
                                   "Webhook-Signature": webhook.sign(secret, "a1:c1:webhook", old, body)}, body)
