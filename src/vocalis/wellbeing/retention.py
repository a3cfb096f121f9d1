"""Retention and deletion of wellbeing data (check-ins, enrolled clips, personal models).

* :func:`purge_checkins` deletes check-ins older than a retention period (days). The CLI runs it
  on every ``mood`` / ``history`` when ``--retention-days`` (``$VOCALIS_WELLBEING_RETENTION_DAYS``)
  is set; the service runs it in its housekeeping loop
  (``VOCALIS_WELLBEING_RETENTION_DAYS``, default ``VOCALIS_RETENTION_DAYS``).
* :func:`delete_user_data` erases *everything* kept about one user: check-ins, enrolled embeddings,
  the personal-model record and its files on disk, and the user row. The service's
  ``DELETE /v1/users/me/data`` should call it with ``store_user_id(user.id)``
  (:func:`vocalis.wellbeing.service.store_user_id`) under the user's write lock, for example via
  :func:`vocalis.service.routes.wellbeing.delete_service_user_data`.

Deleted rows are overwritten in the SQLite file (``PRAGMA secure_delete``), not just unlinked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vocalis.errors import ConfigError
from vocalis.wellbeing.store import WellbeingStore, check_user


def _cutoff(retention_days: int, now: dt.datetime | None) -> dt.datetime:
    if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 1:
        raise ConfigError(f"retention_days={retention_days!r} must be a whole number of days >= 1")
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return now - dt.timedelta(days=retention_days)


def purge_checkins(store: WellbeingStore, retention_days: int, *, now: dt.datetime | None = None,
                   user: str | None = None) -> int:
    """Delete check-ins older than ``retention_days`` days before ``now`` (of every user, or of ``user``).

    Returns the number deleted. Enrolled clips and personal models are not touched: they are the
    user's explicit choice and go with :func:`delete_user_data` or a reset.
    """
    return store.purge_checkins(_cutoff(retention_days, now), user=user)


@dataclass(frozen=True)
class DeletedData:
    """What :func:`delete_user_data` removed."""

    user: str
    checkins: int
    enrolments: int
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "checkins": self.checkins, "enrolments": self.enrolments, "files": self.files}


def delete_user_data(store: WellbeingStore | str | Path, user: str) -> DeletedData:
    """Delete all wellbeing data of ``user``: check-ins, enrolled embeddings, the personal model
    (its database record and its ``.npz``/``.json`` files) and the user row.

    ``store`` is an open :class:`WellbeingStore` or the path of its SQLite file (opened and closed
    here; a missing file means there is nothing to delete and is not created). ``user`` is the
    store's user id (for a service account: ``store_user_id(account_id)``). Idempotent: deleting
    an unknown user returns zeros. Other users' data are never touched.

    >>> import tempfile, pathlib
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "wb.db"
    >>> delete_user_data(db, "ann").to_dict()
    {'user': 'ann', 'checkins': 0, 'enrolments': 0, 'files': []}
    """
    check_user(user)
    if not isinstance(store, WellbeingStore):
        path = Path(store).expanduser()
        if not path.is_file():
            return DeletedData(user, 0, 0, [])
        with WellbeingStore(path) as s:
            return delete_user_data(s, user)
    counts, files = store.delete_user_and_files(user)  # rows in one transaction, then the model files
    return DeletedData(user, counts["checkins"], counts["enrolments"], sorted(str(p) for p in files))
