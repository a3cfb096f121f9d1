"""Retention: delete history and evidence older than ``retention_days``, and wellbeing check-ins
older than ``wellbeing_retention_days`` (run by the app's housekeeping loop)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from vocalis.storage import repositories as repo
from vocalis.storage.db import SessionFactory
from vocalis.storage.tables import utcnow

log = logging.getLogger("vocalis.service")


def purge_expired(
    session_factory: SessionFactory, evidence_root: Path, retention_days: int, now: datetime | None = None
) -> tuple[int, int]:
    """Delete expired rows (history, evidence, call reports), then evidence files.

    Returns (predictions, evidence files) removed.
    """
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with session_factory() as session, session.begin():
        n_pred, paths = repo.purge_before(session, cutoff)
        n_calls = repo.purge_calls_before(session, cutoff)
    removed = 0
    root = evidence_root.resolve()
    for rel in paths:
        p = (root / rel).resolve()
        if p.is_relative_to(root) and p.is_file():
            p.unlink()
            removed += 1
    if n_pred or removed or n_calls:
        log.info("retention: removed %d predictions, %d call reports and %d evidence files older than %s",
                 n_pred, n_calls, removed, cutoff)
    return n_pred, removed


def purge_wellbeing(db_path: Path, retention_days: int, now: datetime | None = None) -> int:
    """Delete wellbeing check-ins older than ``retention_days`` from ``db_path``; returns how many.

    A missing database file means no wellbeing data yet: nothing is created.
    """
    from vocalis.wellbeing.retention import purge_checkins
    from vocalis.wellbeing.store import WellbeingStore

    if not db_path.is_file():
        return 0
    with WellbeingStore(db_path) as store:
        n = purge_checkins(store, retention_days, now=now)
    if n:
        log.info("retention: removed %d wellbeing check-ins older than %d days", n, retention_days)
    return n
