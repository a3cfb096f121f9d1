"""Alert life cycle and the transactional outbox (FastAPI-free; the stream route calls it too).

``create_alert`` with ``status="confirmed"`` writes the alert and one delivery row per contact
per channel in the caller's transaction: both are committed together or not at all, and the
relay delivers the rows later. An alert in ``countdown``/``pending`` has no deliveries until
:func:`confirm_alert`; only those can be cancelled.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from vocalis.service.errors import ConflictError, InvalidInputError, NotFoundError
from vocalis.storage import repositories as repo
from vocalis.storage.tables import ALERT_SOURCES, Alert, Delivery, utcnow

CANCELLABLE = ("pending", "countdown")
CREATABLE = ("pending", "countdown", "confirmed")


@dataclass(frozen=True)
class Location:
    """Where the user was, as the browser's Geolocation API reports it."""

    latitude: float
    longitude: float
    accuracy_m: float | None = None


def idempotency_key(alert_id: str, contact_id: str, channel: str) -> str:
    """One key per alert, contact and channel: the outbox's unique constraint and the providers' dedupe key."""
    return f"{alert_id}:{contact_id}:{channel}"


def _fan_out(session: Session, alert: Alert, now: datetime) -> list[Delivery]:
    deliveries = [
        Delivery(
            alert_id=alert.id,
            contact_id=contact.id,
            channel=channel,
            idempotency_key=idempotency_key(alert.id, contact.id, channel),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for contact in repo.list_contacts(session, alert.user_id)
        for channel in contact.channel_list
    ]
    repo.add_deliveries(session, deliveries)
    return deliveries


def create_alert(
    session: Session,
    user_id: str,
    source: str,
    risk: float | None = None,
    reason: str | None = None,
    location: Location | None = None,
    status: str = "confirmed",
    *,
    now: datetime | None = None,
) -> Alert:
    """Create an alert; a ``confirmed`` one gets its outbox rows in the same transaction.

    Flushes but does not commit: the caller commits (or rolls back everything).
    """
    if source not in ALERT_SOURCES:
        raise InvalidInputError(f"source={source!r} must be one of {', '.join(ALERT_SOURCES)}")
    if status not in CREATABLE:
        raise InvalidInputError(f"status={status!r} must be one of {', '.join(CREATABLE)}")
    if risk is not None and not 0.0 <= risk <= 1.0:
        raise InvalidInputError(f"risk={risk} must be between 0 and 1")
    now = now or utcnow()
    alert = Alert(
        user_id=user_id,
        source=source,
        status=status,
        risk=risk,
        reason=reason,
        latitude=None if location is None else location.latitude,
        longitude=None if location is None else location.longitude,
        accuracy_m=None if location is None else location.accuracy_m,
        created_at=now,
        confirmed_at=now if status == "confirmed" else None,
    )
    repo.add_alert(session, alert)
    if status == "confirmed":
        _fan_out(session, alert, now)
    session.refresh(alert, attribute_names=["deliveries"])
    return alert


def get_alert(session: Session, user_id: str, alert_id: str) -> Alert:
    """The user's alert, or :class:`NotFoundError` (also for another user's alert)."""
    alert = repo.get_alert(session, user_id, alert_id)
    if alert is None:
        raise NotFoundError(f"alert={alert_id} not found")
    return alert


def confirm_alert(session: Session, user_id: str, alert_id: str, *, now: datetime | None = None) -> Alert:
    """Turn a ``pending``/``countdown`` alert into ``confirmed`` and write its outbox rows."""
    alert = repo.get_alert(session, user_id, alert_id, for_update=True)
    if alert is None:
        raise NotFoundError(f"alert={alert_id} not found")
    if alert.status not in CANCELLABLE:
        raise ConflictError(f"alert={alert_id} has status={alert.status}; only pending or countdown can be confirmed")
    now = now or utcnow()
    alert.status = "confirmed"
    alert.confirmed_at = now
    _fan_out(session, alert, now)
    session.refresh(alert, attribute_names=["deliveries"])
    return alert


def cancel_alert(session: Session, user_id: str, alert_id: str, *, now: datetime | None = None) -> Alert:
    """Cancel a ``pending``/``countdown`` alert; a confirmed one is :class:`ConflictError` (409)."""
    alert = repo.get_alert(session, user_id, alert_id, for_update=True)
    if alert is None:
        raise NotFoundError(f"alert={alert_id} not found")
    if alert.status not in CANCELLABLE:
        raise ConflictError(
            f"alert={alert_id} has status={alert.status}; only a pending or countdown alert can be cancelled"
        )
    alert.status = "cancelled"
    alert.cancelled_at = now or utcnow()
    session.flush()
    return alert


ABANDONED_NOTE = "sent after a server interruption during the cancel countdown"


def confirm_abandoned(
    session: Session, cutoff: datetime, live: Collection[str] = (), *, now: datetime | None = None
) -> list[Alert]:
    """Confirm the ``countdown`` alerts created before ``cutoff`` that no live stream in ``live`` runs.

    A stream's countdown alert is always decided (cancelled or confirmed) by its session, also when
    the connection or the server goes away; one still in ``countdown`` long after its countdown
    would have ended belongs to a server that died (killed, power lost) before it could decide.
    Nobody can cancel it any more, so it is confirmed — a missed alert costs more than a false one —
    with :data:`ABANDONED_NOTE` added to its reason. Flushes, does not commit.
    """
    confirmed = []
    for alert_id, user_id in repo.countdown_alerts_before(session, cutoff):
        if alert_id in live:
            continue
        try:  # locks the row and checks its status again
            alert = confirm_alert(session, user_id, alert_id, now=now)
        except (ConflictError, NotFoundError):  # decided or deleted meanwhile
            continue
        alert.reason = f"{alert.reason}; {ABANDONED_NOTE}" if alert.reason else ABANDONED_NOTE
        confirmed.append(alert)
    session.flush()
    return confirmed
