"""The outbox relay against real local servers: a fake Twilio API, a webhook receiver, an SMTP sink.

Time is injected (``now``), so backoff never sleeps; only the timeout test waits (0.5 s).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from tests.service.conftest import Account, register
from tests.service.fakes import FakeTwilio, WebhookReceiver, fake_twilio, smtp_sink
from vocalis.notify.base import AlertInfo, ContactInfo, DeliveryInfo, Notifier, PermanentNotifyError, UserInfo
from vocalis.notify.email import EmailNotifier
from vocalis.notify.relay import RelayWorker, RetryPolicy, claim, run_once
from vocalis.notify.twilio import IDEMPOTENCY_HEADER, TwilioNotifier
from vocalis.notify.webhook import WebhookNotifier, verify
from vocalis.storage.tables import Alert, Delivery, utcnow

FROM = "+15005550006"
POLICY = RetryPolicy(max_attempts=8, backoff_base=1, backoff_max=10, lease_seconds=60, max_workers=4)


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with fake_twilio() as fake:
        yield fake


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """The fake receivers listen on 127.0.0.1: this server allows private webhook addresses."""
    return make_client(webhook_allow_private=True)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.stop()


def _twilio_notifier(fake: FakeTwilio, timeout: float = 2.0) -> TwilioNotifier:
    return TwilioNotifier(fake.account_sid, fake.auth_token, FROM, base_url=fake.base_url, timeout=timeout)


def _deliveries(client: TestClient) -> list[Delivery]:
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        return list(s.scalars(select(Delivery).order_by(Delivery.idempotency_key)).all())


def _alert_status(client: TestClient, acct: Account, alert_id: str) -> str:
    return str(client.get(f"/v1/alerts/{alert_id}", headers=acct.headers).json()["status"])


def _drain(client: TestClient, notifiers: dict[str, Notifier], start: datetime, policy: RetryPolicy = POLICY,
           passes: int = 30) -> datetime:
    """Run passes, moving the clock past any backoff, until nothing is due."""
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    now = start
    for _ in range(passes):
        run_once(factory, notifiers, now, policy=policy)
        if all(d.status in ("sent", "failed") for d in _deliveries(client)):
            return now
        now += timedelta(seconds=policy.backoff_max + 1)
    raise AssertionError(f"not drained: {[(d.channel, d.status, d.last_error) for d in _deliveries(client)]}")


def _alert(client: TestClient, acct: Account, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/alerts", headers=acct.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_every_alert_delivered_exactly_once_despite_429_500_and_timeouts(
    client: TestClient, twilio: FakeTwilio
) -> None:
    ann = register(client, "ann@example.org", name="Ann")
    phones = ["+33612345601", "+33612345602", "+33612345603"]
    for i, p in enumerate(phones):
        client.post("/v1/contacts", headers=ann.headers, json={"name": f"C{i}", "phone": p, "channels": ["sms", "call"]})
    alerts = [_alert(client, ann, reason=f"test {i}") for i in range(2)]
    twilio.inject(429, 500, ("delay", 1.0), 503, 429, 502)
    notifier = _twilio_notifier(twilio, timeout=0.5)
    _drain(client, {"sms": notifier, "call": notifier}, utcnow())

    rows = _deliveries(client)
    assert len(rows) == 12 and all(d.status == "sent" for d in rows)
    assert sum(d.attempts for d in rows) >= 12 + 6  # each injected fault cost a retry
    created = twilio.created
    assert len(created) == 12, created
    assert sorted(c["token"] for c in created) == sorted(d.idempotency_key for d in rows)
    by_token = {c["token"]: c["sid"] for c in created}
    assert all(by_token[d.idempotency_key] == d.provider_id for d in rows)
    assert len(twilio.messages) == 6 and len(twilio.calls) == 6
    for a in alerts:
        assert _alert_status(client, ann, a["id"]) == "delivered"
    # every request carried the idempotency header and the account's basic auth
    assert all(r.headers.get(IDEMPOTENCY_HEADER.lower()) for r in twilio.requests)


def test_crash_between_provider_success_and_commit_does_not_duplicate(
    client: TestClient, twilio: FakeTwilio, receiver: WebhookReceiver
) -> None:
    ann = register(client, name="Ann")
    client.post("/v1/contacts", headers=ann.headers,
                json={"name": "M", "phone": "+33612345678", "webhook_url": receiver.url, "channels": ["sms", "webhook"]})
    alert = _alert(client, ann)
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    notifiers: dict[str, Notifier] = {"sms": _twilio_notifier(twilio), "webhook": WebhookNotifier(2.0, allow_private=True)}

    class Killed(BaseException):
        """The process dies: nothing after this runs."""

    sessions = 0

    def dying_factory() -> Any:
        nonlocal sessions
        sessions += 1
        s = factory()
        if sessions >= 2:  # the claim committed; the first "record" transaction dies before COMMIT
            event.listen(s, "before_commit", lambda _s: (_ for _ in ()).throw(Killed()))
        return s

    t0 = utcnow()
    with pytest.raises(Killed):
        run_once(dying_factory, notifiers, t0, policy=POLICY)  # type: ignore[arg-type]
    assert len(twilio.created) == 1 and len(receiver.received) == 1  # the providers did their part...
    assert {d.status for d in _deliveries(client)} == {"sending"}  # ...but the database never heard
    assert run_once(factory, notifiers, t0 + timedelta(seconds=30), policy=POLICY) == 0  # lease still held

    # the relay restarts after the lease: re-claims and re-sends with the same idempotency keys
    assert run_once(factory, notifiers, t0 + timedelta(seconds=61), policy=POLICY) == 2
    rows = _deliveries(client)
    assert {d.status for d in rows} == {"sent"} and all(d.attempts == 2 for d in rows)
    assert len(twilio.requests) == 2 and len(twilio.created) == 1  # Twilio de-duplicated by token
    sms = next(d for d in rows if d.channel == "sms")
    assert sms.provider_id == twilio.created[0]["sid"]
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 2 and len(set(ids)) == 1  # the receiver can drop the repeat by webhook-id
    assert _alert_status(client, ann, alert["id"]) == "delivered"


def test_permanent_errors_fail_fast_and_alert_is_partially_failed(
    client: TestClient, twilio: FakeTwilio, receiver: WebhookReceiver
) -> None:
    ann = register(client)
    client.post("/v1/contacts", headers=ann.headers,
                json={"name": "M", "phone": "+33612345678", "email": "m@example.org", "webhook_url": receiver.url,
                      "channels": ["sms", "webhook", "email"]})
    alert = _alert(client, ann)
    twilio.inject(400)  # e.g. an unreachable number
    _drain(client, {"sms": _twilio_notifier(twilio), "webhook": WebhookNotifier(2.0, allow_private=True)}, utcnow())
    rows = {d.channel: d for d in _deliveries(client)}
    assert rows["sms"].status == "failed" and rows["sms"].attempts == 1 and "HTTP 400" in (rows["sms"].last_error or "")
    assert rows["email"].status == "failed" and "not configured" in (rows["email"].last_error or "")
    assert rows["webhook"].status == "sent"
    assert _alert_status(client, ann, alert["id"]) == "partially_failed"
    assert twilio.created == []


def test_gives_up_after_max_attempts(client: TestClient, twilio: FakeTwilio) -> None:
    ann = register(client)
    client.post("/v1/contacts", headers=ann.headers, json={"name": "M", "phone": "+33612345678"})
    alert = _alert(client, ann)
    twilio.inject(429, 429, 429, 429)
    policy = RetryPolicy(max_attempts=3, backoff_base=1, backoff_max=10)
    n = _twilio_notifier(twilio)
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    t = utcnow()
    run_once(factory, {"sms": n}, t, policy=policy)
    (d,) = _deliveries(client)
    assert d.status == "pending" and d.attempts == 1 and "429" in (d.last_error or "")
    assert t + timedelta(seconds=0.5) <= d.next_attempt_at <= t + timedelta(seconds=1)  # base 1 s, with jitter
    assert run_once(factory, {"sms": n}, t, policy=policy) == 0  # not due yet
    _drain(client, {"sms": n}, t + timedelta(seconds=11), policy=policy)
    (d,) = _deliveries(client)
    assert d.status == "failed" and d.attempts == 3 and len(twilio.requests) == 3
    assert _alert_status(client, ann, alert["id"]) == "failed"


def test_message_says_who_when_where_and_why(client: TestClient, twilio: FakeTwilio) -> None:
    ann = register(client, name="Ann")
    client.post("/v1/contacts", headers=ann.headers,
                json={"name": "M", "phone": "+33612345678", "channels": ["sms", "call"]})
    alert = _alert(client, ann, risk=0.9, reason="scream detected",
                   location={"latitude": 48.8584, "longitude": 2.2945, "accuracy_m": 15})
    n = _twilio_notifier(twilio)
    _drain(client, {"sms": n, "call": n}, utcnow())
    (sms,) = twilio.messages
    body = sms["body"]
    when = datetime.fromisoformat(alert["created_at"].replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    for part in ("Ann (ann@example.org)", when, "openstreetmap.org/?mlat=48.858400&mlon=2.294500", "±15 m",
                 "Risk: 90%", "scream detected"):
        assert part in body, part
    assert sms["to"] == "+33612345678" and sms["from"] == FROM
    (call,) = twilio.calls
    assert call["twiml"].startswith("<?xml") and "<Say>Vocalis alert: Ann (ann@example.org)" in call["twiml"]


def test_webhook_signature_verifies_at_the_receiver(client: TestClient, receiver: WebhookReceiver) -> None:
    ann = register(client, name="Ann")
    contact = client.post("/v1/contacts", headers=ann.headers, json={"name": "Hook", "webhook_url": receiver.url}).json()
    alert = _alert(client, ann, reason="help")
    receiver.statuses = [503]  # first try: the receiver is down -> retried
    _drain(client, {"webhook": WebhookNotifier(2.0, allow_private=True)}, utcnow())
    assert len(receiver.received) == 2
    req = receiver.received[-1]
    secret = contact["webhook_secret"]
    assert verify(secret, req.headers, req.body)
    assert not verify(secret, req.headers, req.body + b" ")
    assert not verify("whsec_" + base64.b64encode(b"wrong key").decode(), req.headers, req.body)
    # an independent receiver implementation of the Standard Webhooks check
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{req.headers['webhook-id']}.{req.headers['webhook-timestamp']}.".encode() + req.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert req.headers["webhook-signature"] == f"v1,{expected}"
    assert req.headers["webhook-id"] == f"{alert['id']}:{contact['id']}:webhook"
    payload = json.loads(req.body)
    assert payload["type"] == "alert.triggered" and payload["data"]["alert_id"] == alert["id"]
    assert payload["data"]["user"]["email"] == "ann@example.org" and "help" in payload["data"]["message"]


def test_email_goes_through_smtp(client: TestClient) -> None:
    ann = register(client, name="Ann")
    client.post("/v1/contacts", headers=ann.headers, json={"name": "Mum", "email": "mum@example.org"})
    alert = _alert(client, ann)
    with smtp_sink() as (port, received):
        notifier = EmailNotifier("127.0.0.1", port, sender="alerts@vocalis.test", starttls=False, timeout=5)
        _drain(client, {"email": notifier}, utcnow())
    (env,) = received
    assert env.rcpt_tos == ["mum@example.org"] and env.mail_from == "alerts@vocalis.test"
    text = env.content.decode()
    assert "Subject: Vocalis alert: Ann (ann@example.org) may need help" in text
    assert f"Message-ID: <{alert['id']}." in text
    (d,) = _deliveries(client)
    assert d.status == "sent" and d.provider_id and alert["id"] in d.provider_id


def test_email_connection_refused_is_retryable() -> None:
    from tests.service.fakes import free_port
    from vocalis.notify.base import NotifyError

    n = EmailNotifier("127.0.0.1", free_port(), sender="a@b.test", starttls=False, timeout=1)
    info = (DeliveryInfo("d", "a", "email", "a:c:email", 1),
            AlertInfo("a", "manual", None, None, utcnow()), ContactInfo("c", "M", email="m@example.org"),
            UserInfo("u", "u@example.org"))
    with pytest.raises(NotifyError) as e:
        n.send(*info)
    assert e.value.retryable


def test_two_relays_never_claim_the_same_row(client: TestClient) -> None:
    ann = register(client)
    client.post("/v1/contacts", headers=ann.headers, json={"name": "M", "phone": "+33612345678"})
    _alert(client, ann)
    _alert(client, ann)
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    now = utcnow()
    first = claim(factory, now, POLICY)
    second = claim(factory, now, POLICY)
    assert len(first) == 2 and second == []


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> str:
        self.sent.append(delivery.idempotency_key)
        return f"rec-{len(self.sent)}"


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_app_lifespan_runs_the_relay_with_twilio_from_settings(make_client, twilio: FakeTwilio) -> None:  # type: ignore[no-untyped-def]
    client = make_client(relay_enabled=True, relay_poll_seconds=30, twilio_account_sid=twilio.account_sid,
                         twilio_auth_token=twilio.auth_token, twilio_from_number=FROM, twilio_base_url=twilio.base_url)
    ann = register(client, name="Ann")
    client.post("/v1/contacts", headers=ann.headers, json={"name": "M", "phone": "+33612345678"})
    alert = _alert(client, ann)  # wakes the relay: no 30 s poll wait
    _wait_for(lambda: _alert_status(client, ann, alert["id"]) == "delivered")
    assert len(twilio.messages) == 1
    assert 'vocalis_delivery_attempts_total{channel="sms",outcome="sent"} 1.0' in client.get("/metrics").text


def test_worker_flushes_due_deliveries_on_stop(client: TestClient) -> None:
    ann = register(client)
    client.post("/v1/contacts", headers=ann.headers, json={"name": "M", "email": "m@example.org"})
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    rec = Recorder()

    async def scenario() -> None:
        worker = RelayWorker(factory, {"email": rec}, poll_seconds=3600, policy=POLICY)
        await worker.start()
        await asyncio.sleep(0.05)  # first pass: nothing due
        _alert(client, ann)  # no wake(): only the flush on stop can deliver it
        await worker.stop(flush=True)

    asyncio.run(scenario())
    assert len(rec.sent) == 1
    with factory() as s:
        assert s.scalars(select(Alert.status)).one() == "delivered"


class Flaky:
    """Fails (retryable) for the first ``n`` sends, then records them like :class:`Recorder`."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.sent = n, 0, []  # type: ignore[var-annotated]

    def send(self, delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> str:
        from vocalis.errors import NotifyError

        self.calls += 1
        if self.calls <= self.n:
            raise NotifyError("provider down", retryable=True)
        self.sent.append(delivery.idempotency_key)
        return f"ok-{self.calls}"


def test_flush_on_stop_tries_backing_off_deliveries_once_and_keeps_failures_pending(client: TestClient) -> None:
    """The shutdown flush ignores backoff but tries each delivery once: a failure stays in the outbox."""
    ann = register(client)
    for name in ("A", "B", "C"):
        client.post("/v1/contacts", headers=ann.headers, json={"name": name, "email": f"{name}@example.org"})
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    _alert(client, ann)
    flaky = Flaky(3)
    slow = RetryPolicy(max_attempts=8, backoff_base=600, backoff_max=1200, batch_size=1, max_workers=1)
    assert run_once(factory, {"email": flaky}, policy=slow) == 1  # fails: backing off for ~10 minutes
    assert run_once(factory, {"email": flaky}, policy=slow) == 1
    assert run_once(factory, {"email": flaky}, policy=slow) == 1
    assert run_once(factory, {"email": flaky}, policy=slow) == 0  # nothing due
    worker = RelayWorker(factory, {"email": flaky}, policy=slow)
    assert worker.flush() == 3  # batch_size=1: three passes, each delivery once
    assert len(flaky.sent) == 3 and flaky.calls == 6
    with factory() as s:
        assert sorted((d.status, d.attempts) for d in s.scalars(select(Delivery))) == [("sent", 2)] * 3
        assert s.scalars(select(Alert.status)).one() == "delivered"

    _alert(client, ann)
    down = Flaky(10**6)
    assert RelayWorker(factory, {"email": down}, policy=slow).flush() == 3 and down.calls == 3  # no tight loop
    with factory() as s:
        rows = s.scalars(select(Delivery).where(Delivery.status != "sent")).all()
        assert [(d.status, d.attempts) for d in rows] == [("pending", 1)] * 3  # durable for the next relay
        assert all(d.next_attempt_at > utcnow() + timedelta(minutes=4) for d in rows)


def test_webhooks_to_private_addresses_are_refused_unless_allowed(make_client: Callable[..., TestClient],
                                                                   receiver: WebhookReceiver,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Any user can enter a webhook URL: by default the server neither stores nor calls one on its own
    loopback or private network (server-side request forgery)."""
    strict = make_client()
    ann = register(strict, name="Ann")
    for url in (receiver.url, "http://localhost:8000/admin", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/x", "http://10.0.0.5/hook"):
        r = strict.post("/v1/contacts", headers=ann.headers, json={"name": "Hook", "webhook_url": url})
        assert r.status_code == 422 and "must be a public address" in r.json()["error"]["message"], (url, r.text)
    ok = strict.post("/v1/contacts", headers=ann.headers, json={"name": "Hook", "webhook_url": "https://hooks.example/x"})
    assert ok.status_code == 201
    r = strict.patch(f"/v1/contacts/{ok.json()['id']}", headers=ann.headers, json={"webhook_url": receiver.url})
    assert r.status_code == 422 and "must be a public address" in r.json()["error"]["message"]
    # the notifier checks what the host resolves to at send time (a public-looking name can point inside)
    import socket

    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kw: Any) -> Any:
        return real("127.0.0.1" if host == "hooks.example" else host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    contact = ContactInfo(id="c1", name="Hook", webhook_url=receiver.url.replace("127.0.0.1", "hooks.example"))
    delivery = DeliveryInfo(id="d1", alert_id="a1", channel="webhook", idempotency_key="a1:c1:webhook", attempts=1)
    alert = AlertInfo(id="a1", source="manual", risk=1.0, reason="help", created_at=utcnow())
    user = UserInfo(id="u1", email="ann@example.org", name="Ann")
    with pytest.raises(PermanentNotifyError, match="not a public address"):
        WebhookNotifier(2.0).send(delivery, alert, contact, user)
    assert receiver.received == []
    WebhookNotifier(2.0, allow_private=True).send(delivery, alert, contact, user)  # the operator allows it
    assert len(receiver.received) == 1
