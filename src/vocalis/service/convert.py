"""ORM rows -> response schemas."""

from __future__ import annotations

from collections.abc import Collection

from vocalis.service.schemas import AlertOut, ContactOut, DeliveryOut, EvidenceOut, LocationIn
from vocalis.storage.tables import Alert, Contact, Evidence


def contact_out(c: Contact) -> ContactOut:
    return ContactOut(
        id=c.id, name=c.name, phone=c.phone, email=c.email, webhook_url=c.webhook_url,
        webhook_secret=c.webhook_secret, channels=c.channel_list, created_at=c.created_at,
    )


def alert_warnings(a: Alert, channels: Collection[str] | None) -> list[str]:
    """Why ``a`` may reach nobody: it has no deliveries, or some are on ``channels`` the server lacks."""
    if not a.deliveries:
        return ["this alert reaches nobody: you have no contacts (add one with POST /v1/contacts)"]
    if channels is None:
        return []
    missing = sorted({d.channel for d in a.deliveries} - set(channels))
    return [f"channel={c} is not configured on this server: its {sum(d.channel == c for d in a.deliveries)} "
            "delivery(ies) will fail" for c in missing]


def alert_out(a: Alert, channels: Collection[str] | None = None, *, warn: bool = False) -> AlertOut:
    """``warn``: fill ``warnings`` (``channels``: the server's configured channels, None = unknown)."""
    location = None
    if a.latitude is not None and a.longitude is not None:
        location = LocationIn(latitude=a.latitude, longitude=a.longitude, accuracy_m=a.accuracy_m)
    return AlertOut(
        id=a.id, source=a.source, status=a.status, risk=a.risk, reason=a.reason, location=location,
        created_at=a.created_at, confirmed_at=a.confirmed_at, cancelled_at=a.cancelled_at,
        deliveries=[DeliveryOut.model_validate(d) for d in a.deliveries],
        warnings=alert_warnings(a, channels) if warn else [],
    )


def evidence_out(e: Evidence) -> EvidenceOut:
    return EvidenceOut(id=e.id, alert_id=e.alert_id, content_type=e.content_type, bytes=e.size_bytes,
                       sha256=e.sha256, created_at=e.created_at)
