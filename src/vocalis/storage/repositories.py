"""Data access scoped by owner: every query about a user's data filters by ``user_id``.

A row that belongs to someone else is indistinguishable from one that does not exist
(``None``), so the service answers 404 for both. Functions flush but never commit: the caller
owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from vocalis.storage.tables import (
    Alert,
    ApiKey,
    CallRecord,
    Contact,
    Delivery,
    Evidence,
    PredictionRecord,
    User,
)

# users ----------------------------------------------------------------------------------------


def create_user(session: Session, *, email: str, password_hash: str, name: str | None = None) -> User:
    user = User(email=email.lower(), password_hash=password_hash, name=name)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, user_id: str) -> User | None:
    return session.get(User, user_id)


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


# API keys -------------------------------------------------------------------------------------


def create_api_key(session: Session, user_id: str, *, prefix: str, key_hash: str, name: str | None = None) -> ApiKey:
    key = ApiKey(user_id=user_id, prefix=prefix, key_hash=key_hash, name=name)
    session.add(key)
    session.flush()
    return key


def list_api_keys(session: Session, user_id: str) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at, ApiKey.id)
    ).all()


def get_api_key(session: Session, user_id: str, key_id: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))


def active_api_keys_by_prefix(session: Session, prefix: str) -> Sequence[ApiKey]:
    """Unrevoked keys with this prefix (authentication looks the key up before knowing the user)."""
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).all()


# contacts -------------------------------------------------------------------------------------


def create_contact(session: Session, user_id: str, **fields: Any) -> Contact:
    contact = Contact(user_id=user_id, **fields)
    session.add(contact)
    session.flush()
    return contact


def list_contacts(session: Session, user_id: str) -> Sequence[Contact]:
    return session.scalars(
        select(Contact).where(Contact.user_id == user_id).order_by(Contact.created_at, Contact.id)
    ).all()


def get_contact(session: Session, user_id: str, contact_id: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.id == contact_id, Contact.user_id == user_id))


def delete_contact(session: Session, user_id: str, contact_id: str) -> bool:
    contact = get_contact(session, user_id, contact_id)
    if contact is None:
        return False
    session.delete(contact)
    session.flush()
    return True


# alerts and deliveries ------------------------------------------------------------------------


def add_alert(session: Session, alert: Alert) -> Alert:
    session.add(alert)
    session.flush()
    return alert


def get_alert(session: Session, user_id: str, alert_id: str, *, for_update: bool = False) -> Alert | None:
    stmt = select(Alert).where(Alert.id == alert_id, Alert.user_id == user_id).options(
        selectinload(Alert.deliveries)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def countdown_alerts_before(session: Session, cutoff: datetime) -> list[tuple[str, str]]:
    """``(alert id, user id)`` of the alerts (of every user) still in ``countdown`` created before ``cutoff``."""
    stmt = select(Alert.id, Alert.user_id).where(
        Alert.status == "countdown", Alert.created_at < cutoff).order_by(Alert.created_at)
    return [(str(a), str(u)) for a, u in session.execute(stmt)]


def list_alerts(session: Session, user_id: str, *, limit: int = 50, offset: int = 0) -> tuple[Sequence[Alert], int]:
    total = session.scalar(select(func.count()).select_from(Alert).where(Alert.user_id == user_id)) or 0
    rows = session.scalars(
        select(Alert)
        .where(Alert.user_id == user_id)
        .options(selectinload(Alert.deliveries))
        .order_by(Alert.created_at.desc(), Alert.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return rows, int(total)


def add_deliveries(session: Session, deliveries: Sequence[Delivery]) -> None:
    session.add_all(deliveries)
    session.flush()


def delivery_counts(session: Session) -> dict[str, int]:
    """Deliveries by status across all users (for the metrics endpoint only)."""
    rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    return {str(status): int(n) for status, n in rows}


def alert_counts(session: Session) -> dict[str, int]:
    """Alerts by status across all users (for the metrics endpoint only)."""
    rows = session.execute(select(Alert.status, func.count()).group_by(Alert.status)).all()
    return {str(status): int(n) for status, n in rows}


# evidence -------------------------------------------------------------------------------------


def add_evidence(session: Session, evidence: Evidence) -> Evidence:
    session.add(evidence)
    session.flush()
    return evidence


def list_evidence(session: Session, user_id: str, alert_id: str) -> Sequence[Evidence]:
    return session.scalars(
        select(Evidence)
        .where(Evidence.user_id == user_id, Evidence.alert_id == alert_id)
        .order_by(Evidence.created_at, Evidence.id)
    ).all()


def get_evidence(session: Session, user_id: str, evidence_id: str) -> Evidence | None:
    return session.scalar(select(Evidence).where(Evidence.id == evidence_id, Evidence.user_id == user_id))


# history --------------------------------------------------------------------------------------


def add_prediction(session: Session, record: PredictionRecord) -> PredictionRecord:
    session.add(record)
    session.flush()
    return record


def list_predictions(
    session: Session, user_id: str, *, limit: int = 50, offset: int = 0
) -> tuple[Sequence[PredictionRecord], int]:
    total = session.scalar(
        select(func.count()).select_from(PredictionRecord).where(PredictionRecord.user_id == user_id)
    ) or 0
    rows = session.scalars(
        select(PredictionRecord)
        .where(PredictionRecord.user_id == user_id)
        .order_by(PredictionRecord.created_at.desc(), PredictionRecord.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return rows, int(total)


# retention ------------------------------------------------------------------------------------


def purge_before(session: Session, cutoff: datetime) -> tuple[int, list[str]]:
    """Delete history and evidence rows created before ``cutoff``.

    Returns the number of prediction rows deleted and the evidence paths (relative to the
    evidence directory) whose files the caller should remove after committing.
    """
    paths = list(session.scalars(select(Evidence.path).where(Evidence.created_at < cutoff)).all())
    session.execute(delete(Evidence).where(Evidence.created_at < cutoff))
    n = session.execute(delete(PredictionRecord).where(PredictionRecord.created_at < cutoff))
    return int(getattr(n, "rowcount", 0) or 0), paths


OPEN_ALERT_STATUSES = ("pending", "countdown")
OPEN_DELIVERY_STATUSES = ("pending", "sending")


def _open_alert_ids(session: Session, user_id: str | None = None) -> set[str]:
    """Alerts still in flight: a countdown running, or a delivery not yet sent or failed."""
    by_status = select(Alert.id).where(Alert.status.in_(OPEN_ALERT_STATUSES))
    by_delivery = select(Delivery.alert_id).where(Delivery.status.in_(OPEN_DELIVERY_STATUSES))
    if user_id is not None:
        by_status = by_status.where(Alert.user_id == user_id)
        by_delivery = by_delivery.join(Alert, Alert.id == Delivery.alert_id).where(Alert.user_id == user_id)
    return set(session.scalars(by_status).all()) | set(session.scalars(by_delivery).all())


def _delete_alerts(session: Session, alert_ids: Sequence[str]) -> int:
    """Delete alerts with their deliveries and evidence rows (explicitly: no reliance on FK cascades)."""
    if not alert_ids:
        return 0
    ids = list(alert_ids)
    session.execute(delete(Delivery).where(Delivery.alert_id.in_(ids)))
    session.execute(delete(Evidence).where(Evidence.alert_id.in_(ids)))
    n = session.execute(delete(Alert).where(Alert.id.in_(ids)))
    return int(getattr(n, "rowcount", 0) or 0)


def purge_alerts_before(session: Session, cutoff: datetime) -> int:
    """Delete finished alerts (and their deliveries) created before ``cutoff``; alerts in flight stay."""
    old = set(session.scalars(select(Alert.id).where(Alert.created_at < cutoff)).all())
    return _delete_alerts(session, sorted(old - _open_alert_ids(session)))


def delete_user_data(session: Session, user_id: str) -> dict[str, Any]:
    """Delete what ``user_id`` produced: history, call reports, evidence rows, finished alerts.

    The account, its API keys and contacts stay. Alerts still in flight (countdown, or deliveries
    pending) stay too, so an emergency under way is still delivered; their evidence rows go.
    Returns the counts and the evidence ``paths`` (relative to the evidence directory) whose files
    the caller removes after committing.
    """
    paths = list(session.scalars(select(Evidence.path).where(Evidence.user_id == user_id)).all())
    n_evidence = session.execute(delete(Evidence).where(Evidence.user_id == user_id))
    n_pred = session.execute(delete(PredictionRecord).where(PredictionRecord.user_id == user_id))
    n_calls = session.execute(delete(CallRecord).where(CallRecord.user_id == user_id))
    keep = _open_alert_ids(session, user_id)
    mine = set(session.scalars(select(Alert.id).where(Alert.user_id == user_id)).all())
    n_alerts = _delete_alerts(session, sorted(mine - keep))
    return {
        "predictions": int(getattr(n_pred, "rowcount", 0) or 0),
        "calls": int(getattr(n_calls, "rowcount", 0) or 0),
        "evidence": int(getattr(n_evidence, "rowcount", 0) or 0),
        "alerts": n_alerts,
        "alerts_kept": len(keep),
        "paths": paths,
    }


# calls (triage) -------------------------------------------------------------------------------


def add_call(session: Session, record: CallRecord) -> CallRecord:
    session.add(record)
    session.flush()
    return record


def get_call(session: Session, user_id: str, call_id: str) -> CallRecord | None:
    return session.scalars(
        select(CallRecord).where(CallRecord.user_id == user_id, CallRecord.id == call_id)
    ).first()


def list_calls(
    session: Session, user_id: str, *, status: str | None = "waiting", limit: int = 50, offset: int = 0
) -> tuple[Sequence[CallRecord], int]:
    """The queue: highest priority first, then first come first served (``status=None``: all calls)."""
    where = [CallRecord.user_id == user_id]
    if status is not None:
        where.append(CallRecord.status == status)
    total = session.scalar(select(func.count()).select_from(CallRecord).where(*where)) or 0
    rows = session.scalars(
        select(CallRecord).where(*where)
        .order_by(CallRecord.priority.desc(), CallRecord.created_at, CallRecord.id)
        .limit(limit).offset(offset)
    ).all()
    return rows, int(total)


def purge_calls_before(session: Session, cutoff: datetime) -> int:
    """Delete call reports (they hold transcripts) created before ``cutoff``."""
    n = session.execute(delete(CallRecord).where(CallRecord.created_at < cutoff))
    return int(getattr(n, "rowcount", 0) or 0)
