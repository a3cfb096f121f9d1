"""Webhooks signed the Standard Webhooks way (https://www.standardwebhooks.com).

Headers: ``webhook-id`` (the delivery's idempotency key, so a receiver can drop duplicates),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"{id}.{timestamp}.{body}"``. A secret ``whsec_<base64>`` is base64-decoded to get the key (the
standard); any other secret is used as its UTF-8 bytes.

>>> sig = sign("whsec_" + "a2V5", "msg_1", 1700000000, b'{"a":1}')
>>> sig.startswith("v1,")
True
>>> verify("whsec_a2V5", {"webhook-id": "msg_1", "webhook-timestamp": "1700000000",
...        "webhook-signature": sig}, b'{"a":1}', now=1700000000)
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping

from vocalis.notify.base import (
    AlertInfo,
    ContactInfo,
    DeliveryInfo,
    PermanentNotifyError,
    RetryableNotifyError,
    UserInfo,
    alert_payload,
)

SECRET_PREFIX = "whsec_"


def private_address(url: str, *, resolve: bool = True) -> str | None:
    """The first address ``url``'s host stands for that is not public (loopback, private,
    link-local, reserved, ...), or ``None``. ``resolve=False`` looks only at literal addresses and
    ``localhost``; a host that does not resolve is ``None`` (the request then fails on its own).

    A webhook is a URL any user can enter: without this check the server would POST to its own
    loopback services or the internal network on a user's behalf (server-side request forgery).

    >>> private_address("http://127.0.0.1:9/hook"), private_address("https://[::1]/x")
    ('127.0.0.1', '::1')
    >>> private_address("http://169.254.169.254/latest"), private_address("https://8.8.8.8/x")
    ('169.254.169.254', None)
    >>> private_address("http://localhost./x", resolve=False)
    'localhost'
    """
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        literal = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        literal = None
    if literal is not None:
        return None if literal.is_global else str(literal)
    if host == "localhost" or host.endswith(".localhost"):
        return host
    if not resolve:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        return None
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not addr.is_global:
            return str(addr)
    return None


def new_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def _key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):])
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode("ascii")


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: int = 300, now: float | None = None
) -> bool:
    """What a receiver does: check the timestamp window and any ``v1`` signature (constant time)."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts = h["webhook-id"], int(h["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    want = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(want, s) for s in h.get("webhook-signature", "").split() if s.startswith("v1,"))


class WebhookNotifier:
    """POSTs the alert as JSON to the contact's ``webhook_url`` with httpx (public addresses only,
    unless ``allow_private``; see :func:`private_address`; redirects are not followed)."""

    channels = ("webhook",)

    def __init__(self, timeout: float = 10.0, *, transport: object | None = None, allow_private: bool = False) -> None:
        import httpx

        self.timeout = timeout
        self.allow_private = allow_private  # receivers on loopback / private networks (off: SSRF)
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)  # type: ignore[arg-type]

    def send(self, delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> str:
        import httpx

        if not contact.webhook_url:
            raise PermanentNotifyError(f"contact={contact.id} has no webhook_url")
        if not self.allow_private:
            bad = private_address(contact.webhook_url)
            if bad is not None:
                raise PermanentNotifyError(
                    f"webhook: {contact.webhook_url} points at {bad}, which is not a public address; this server "
                    "does not send to loopback, private or link-local receivers unless its operator allows them")
        body = json.dumps(alert_payload(delivery, alert, contact, user), separators=(",", ":")).encode()
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "vocalis-webhooks/1",
            "webhook-id": delivery.idempotency_key,
            "webhook-timestamp": str(ts),
        }
        if contact.webhook_secret:
            headers["webhook-signature"] = sign(contact.webhook_secret, delivery.idempotency_key, ts, body)
        try:
            r = self._client.post(contact.webhook_url, content=body, headers=headers)
        except httpx.TimeoutException as e:
            raise RetryableNotifyError(f"webhook: timed out after {self.timeout}s") from e
        except httpx.TransportError as e:
            raise RetryableNotifyError(f"webhook: connection failed ({type(e).__name__}: {e})") from e
        if 200 <= r.status_code < 300:
            return delivery.idempotency_key
        detail = f"webhook: {contact.webhook_url} answered HTTP {r.status_code}"
        if r.status_code in (408, 425, 429) or r.status_code >= 500:
            raise RetryableNotifyError(detail)
        raise PermanentNotifyError(detail)

    def close(self) -> None:
        self._client.close()
