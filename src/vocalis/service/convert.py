"""ORM rows -> response schemas."""

from __future__ import annotations

from vocalis.service.schemas import AlertOut, ContactOut, DeliveryOut, EvidenceOut, LocationIn
from vocalis.storage.tables import Alert, Contact, Evidence


def contact_out(c: Contact) -> ContactOut:
    return ContactOut(
        id=c.id, name=c.name, phone=c.phone, email=c.email, webhook_url=c.webhook_url,
        webhook_secret=c.webhook_secret, channels=c.channel_list, created_at=c.created_at,
    )


def alert_out(a: Alert) -> AlertOut:
    location = None
    if a.latitude is not None and a.longitude is not None:
        location = LocationIn(latitude=a.latitude, longitude=a.longitude, accuracy_m=a.accuracy_m)
    return AlertOut(
        id=a.id, source=a.source, status=a.status, risk=a.risk, reason=a.reason, location=location,
        created_at=a.created_at, confirmed_at=a.confirmed_at, cancelled_at=a.cancelled_at,
        deliveries=[DeliveryOut.model_validate(d) for d in a.deliveries],
    )


def evidence_out(e: Evidence) -> EvidenceOut:
    return EvidenceOut(id=e.id, alert_id=e.alert_id, content_type=e.content_type, bytes=e.size_bytes,
                       sha256=e.sha256, created_at=e.created_at)
