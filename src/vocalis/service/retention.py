"""Retention and erasure.

The app's housekeeping loop (at start-up, then every few hours) deletes history, evidence (rows
and files), call reports and finished alerts older than ``retention_days`` (``VOCALIS_RETENTION_DAYS``,
default 90), and wellbeing check-ins older than ``wellbeing_retention_days``. Alerts still being
delivered are kept until they are done. :func:`delete_user_files` removes evidence files on disk
for these purges and for ``DELETE /v1/users/me/data``.
"""

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
        n_alerts = repo.purge_alerts_before(session, cutoff)
    removed = remove_evidence_files(evidence_root, paths)
    if n_pred or removed or n_calls or n_alerts:
        log.info("retention: removed %d predictions, %d call reports, %d alerts and %d evidence files older "
                 "than %s", n_pred, n_calls, n_alerts, removed, cutoff)
    return n_pred, removed


def remove_evidence_files(evidence_root: Path, paths: list[str]) -> int:
    """Delete evidence files (paths relative to ``evidence_root``; nothing outside it); returns how many."""
    removed = 0
    root = evidence_root.resolve()
    for rel in paths:
        p = (root / rel).resolve()
        if p.is_relative_to(root) and p.is_file():
            p.unlink()
            removed += 1
    return removed


def delete_user_files(evidence_root: Path, user_id: str, paths: list[str]) -> int:
    """Remove ``user_id``'s evidence files: the listed ones, then any left in their folder
    (``<evidence_root>/<user_id>``; uploads still being written are left to finish), then the empty
    folders. Returns how many files were removed."""
    removed = remove_evidence_files(evidence_root, paths)
    root = evidence_root.resolve()
    user_dir = (root / user_id).resolve()
    if not user_dir.is_relative_to(root) or user_dir == root or not user_dir.is_dir():
        return removed
    for p in sorted(user_dir.rglob("*"), reverse=True):  # children before their folders
        if p.is_file() and not p.name.startswith(".upload-"):
            p.unlink()
            removed += 1
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    if not any(user_dir.iterdir()):
        user_dir.rmdir()
    return removed


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
