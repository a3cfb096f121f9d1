"""The :class:`Notifier` protocol, its errors and the plain records a notifier receives.

A notifier gets immutable snapshots (not ORM rows), so sending happens outside any database
transaction and a notifier never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from vocalis.errors import NotifyError


class RetryableNotifyError(NotifyError):
    """A transient failure: rate limited (429), provider error (5xx), timeout, connection refused."""

    retryable = True


class PermanentNotifyError(NotifyError):
    """A failure that retrying cannot fix: bad number, rejected request (4xx), channel not configured."""

    retryable = False


@dataclass(frozen=True)
class DeliveryInfo:
    id: str
    alert_id: str
    channel: str
    idempotency_key: str
    attempts: int


@dataclass(frozen=True)
class AlertInfo:
    id: str
    source: str
    risk: float | None
    reason: str | None
    created_at: datetime
    latitude: float | None = None
    longitude: float | None = None
    accuracy_m: float | None = None


@dataclass(frozen=True)
class ContactInfo:
    id: str
    name: str
    phone: str | None = None
    email: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True)
class UserInfo:
    id: str
    email: str
    name: str | None = None

    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.email})" if self.name else self.email


@runtime_checkable
class Notifier(Protocol):
    """Sends one delivery; returns the provider's id for it.

    Must be idempotent per ``delivery.idempotency_key``: the relay may call again with the same
    key after a crash between the provider's success and the database commit. Raises
    :class:`NotifyError` (``retryable`` set) on failure.
    """

    def send(self, delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> str: ...


def location_link(alert: AlertInfo) -> str | None:
    """An OpenStreetMap link to the alert's location, if it has one.

    >>> a = AlertInfo("a", "manual", None, None, datetime(2026, 1, 1, tzinfo=timezone.utc), 48.85, 2.35)
    >>> location_link(a)
    'https://www.openstreetmap.org/?mlat=48.850000&mlon=2.350000#map=17/48.850000/2.350000'
    """
    if alert.latitude is None or alert.longitude is None:
        return None
    lat, lon = f"{alert.latitude:.6f}", f"{alert.longitude:.6f}"
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=17/{lat}/{lon}"


def alert_text(alert: AlertInfo, user: UserInfo) -> str:
    """The human message: who, when (UTC), where, risk and reason.

    >>> a = AlertInfo("a", "manual", 0.9, "panic button", datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc))
    >>> alert_text(a, UserInfo("u", "ann@example.org", "Ann"))
    'Vocalis alert: Ann (ann@example.org) may need help. When: 2026-01-02 03:04 UTC. Where: unknown. Risk: 90%. Reason: panic button.'
    """
    when = alert.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    link = location_link(alert)
    where = "unknown" if link is None else link
    if link is not None and alert.accuracy_m is not None:
        where += f" (±{alert.accuracy_m:.0f} m)"
    parts = [f"Vocalis alert: {user.display_name} may need help.", f"When: {when}.", f"Where: {where}."]
    if alert.risk is not None:
        parts.append(f"Risk: {alert.risk:.0%}.")
    if alert.reason:
        parts.append(f"Reason: {alert.reason.strip()[:300]}.")
    return " ".join(parts)


def alert_payload(delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> dict[str, object]:
    """The JSON body of a webhook (Standard Webhooks shape: ``type``, ``timestamp``, ``data``)."""
    return {
        "type": "alert.triggered",
        "timestamp": alert.created_at.astimezone(timezone.utc).isoformat(),
        "data": {
            "alert_id": alert.id,
            "delivery_id": delivery.id,
            "source": alert.source,
            "risk": alert.risk,
            "reason": alert.reason,
            "created_at": alert.created_at.astimezone(timezone.utc).isoformat(),
            "location": None if alert.latitude is None else {
                "latitude": alert.latitude, "longitude": alert.longitude, "accuracy_m": alert.accuracy_m,
                "link": location_link(alert),
            },
            "user": {"id": user.id, "email": user.email, "name": user.name},
            "contact": {"id": contact.id, "name": contact.name},
            "message": alert_text(alert, user),
        },
    }
