"""Local wellbeing storage: users, enrolled embeddings, check-ins and personal-model paths.

One SQLite file (stdlib :mod:`sqlite3`, no extra dependency), by default
``$VOCALIS_DATA_DIR/wellbeing.db`` or ``~/.local/share/vocalis/wellbeing.db``. Personal models
live next to it under ``models/<user>.personal.npz`` + ``.json`` (plain arrays, never pickle).

Embeddings are stored as raw little-endian float32 bytes (``ndarray.tobytes``), never pickled,
each with the sha256 of the feature extractor that made it (so a personal model can be refitted
for a new global model only from embeddings of the same extractor). Deleting a user removes
their rows *and* their model files; deleted rows are overwritten (``PRAGMA secure_delete``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.errors import ConfigError, DataError

USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS wb_users (
    user_id    TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS wb_enrolments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL REFERENCES wb_users(user_id) ON DELETE CASCADE,
    label      TEXT NOT NULL,
    source     TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    embedding  BLOB NOT NULL,
    created_at TEXT NOT NULL,
    features_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS ix_wb_enrolments_user ON wb_enrolments(user_id);
CREATE TABLE IF NOT EXISTS wb_checkins (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL REFERENCES wb_users(user_id) ON DELETE CASCADE,
    ts            TEXT NOT NULL,
    label         TEXT NOT NULL,
    valence       REAL NOT NULL,
    arousal       REAL NOT NULL,
    confidence    REAL NOT NULL,
    personalised  INTEGER NOT NULL,
    weight        REAL NOT NULL,
    probabilities TEXT NOT NULL,
    source        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_wb_checkins_user_ts ON wb_checkins(user_id, ts);
CREATE TABLE IF NOT EXISTS wb_models (
    user_id    TEXT PRIMARY KEY REFERENCES wb_users(user_id) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    n          INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
"""


def default_db_path() -> Path:
    """``$VOCALIS_DATA_DIR/wellbeing.db`` or ``~/.local/share/vocalis/wellbeing.db``."""
    root = os.environ.get("VOCALIS_DATA_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".local" / "share" / "vocalis"
    return base / "wellbeing.db"


def check_user(user: str) -> str:
    """Validate a user id (it names files): 1-64 of ``A-Z a-z 0-9 _ . -``, not starting with a symbol."""
    if not isinstance(user, str) or not USER_RE.match(user):
        raise ConfigError(
            f"user={user!r} must be 1-64 characters of letters, digits, '_', '.', '-' starting with a letter or digit"
        )
    return user


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CheckIn:
    """One mood check-in: when, the predicted label, valence/arousal and calibrated confidence."""

    user: str
    ts: dt.datetime
    label: str
    valence: float
    arousal: float
    confidence: float
    personalised: bool = False
    weight: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    source: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "user": self.user, "ts": _iso(self.ts), "label": self.label,
            "valence": self.valence, "arousal": self.arousal, "confidence": self.confidence,
            "personalised": self.personalised, "weight": self.weight,
            "probabilities": self.probabilities, "source": self.source,
        }


class WellbeingStore:
    """Small repository over one SQLite file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path))
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"db={self.path} cannot be opened: {e}") from e
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, not left in free pages
            self._db.executescript(SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(wb_enrolments)")}
            if "features_sha256" not in cols:  # files written before the column existed
                self._db.execute("ALTER TABLE wb_enrolments ADD COLUMN features_sha256 TEXT")
            self._db.commit()
        except sqlite3.Error as e:
            self._db.close()
            raise ConfigError(f"db={self.path} cannot be used as a wellbeing database: {e}") from e

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> WellbeingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:
                yield self._db
        except sqlite3.Error as e:
            raise DataError(f"db={self.path}: {e}") from e

    @property
    def models_dir(self) -> Path:
        """Folder of the per-user personal models (next to the database)."""
        return self.path.parent / "models"

    def model_path(self, user: str) -> Path:
        """Base path (without ``.npz``/``.json``) of ``user``'s personal model files.

        ``<user>.personal``: a user id may itself end in ``.npz`` or contain dots, and must never
        name another user's files.
        """
        return self.models_dir / f"{check_user(user)}.personal"

    # -- users -------------------------------------------------------------------------------
    def ensure_user(self, user: str) -> None:
        check_user(user)
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO wb_users(user_id, created_at) VALUES (?, ?)", (user, _iso(_now())))

    def users(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT user_id FROM wb_users ORDER BY user_id")]

    # -- enrolment ---------------------------------------------------------------------------
    def add_enrolment(self, user: str, label: str, embedding: np.ndarray, source: str = "",
                      features_sha256: str | None = None) -> int:
        """Store one labelled embedding (float32 bytes) and its extractor's sha256; returns its row id."""
        self.ensure_user(user)
        e = np.ascontiguousarray(embedding, dtype="<f4").ravel()
        if e.size == 0 or not np.all(np.isfinite(e)):
            raise DataError(f"embedding for user={user!r} must be a non-empty finite vector")
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO wb_enrolments(user_id, label, source, dim, embedding, created_at, features_sha256) "
                "VALUES (?,?,?,?,?,?,?)",
                (user, label, source, int(e.size), e.tobytes(), _iso(_now()), features_sha256),
            )
            return int(cur.lastrowid or 0)

    def enrolment_features(self, user: str) -> set[str | None]:
        """The distinct feature-extractor sha256 of the user's enrolled embeddings (``None``: not recorded)."""
        check_user(user)
        rows = self._db.execute("SELECT DISTINCT features_sha256 FROM wb_enrolments WHERE user_id = ?", (user,))
        return {r[0] for r in rows}

    def enrolments(self, user: str) -> tuple[np.ndarray, list[str]]:
        """``(X, labels)``: the user's enrolled embeddings ``(n, D)`` float32 and their labels."""
        check_user(user)
        rows = self._db.execute(
            "SELECT label, dim, embedding FROM wb_enrolments WHERE user_id = ? ORDER BY id", (user,)
        ).fetchall()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), []
        dims = {int(r[1]) for r in rows}
        if len(dims) != 1:
            raise DataError(f"user={user!r} has enrolled embeddings of different sizes {sorted(dims)}; reset them")
        X = np.stack([np.frombuffer(r[2], dtype="<f4") for r in rows]).astype(np.float32)
        return X, [str(r[0]) for r in rows]

    def enrolment_counts(self, user: str) -> dict[str, int]:
        check_user(user)
        rows = self._db.execute(
            "SELECT label, COUNT(*) FROM wb_enrolments WHERE user_id = ? GROUP BY label ORDER BY label", (user,)
        )
        return {str(a): int(b) for a, b in rows}

    # -- models ------------------------------------------------------------------------------
    def set_model(self, user: str, path: Path, n: int) -> None:
        self.ensure_user(user)
        with self._tx() as db:
            db.execute(
                "INSERT INTO wb_models(user_id, path, n, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(user_id) DO UPDATE SET path = excluded.path, n = excluded.n, "
                "updated_at = excluded.updated_at",
                (user, str(path), int(n), _iso(_now())),
            )

    def get_model_path(self, user: str) -> Path | None:
        check_user(user)
        row = self._db.execute("SELECT path FROM wb_models WHERE user_id = ?", (user,)).fetchone()
        return Path(row[0]) if row else None

    # -- check-ins ---------------------------------------------------------------------------
    def add_checkin(self, c: CheckIn) -> CheckIn:
        self.ensure_user(c.user)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO wb_checkins(user_id, ts, label, valence, arousal, confidence, personalised, weight, "
                "probabilities, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (c.user, _iso(c.ts), c.label, float(c.valence), float(c.arousal), float(c.confidence),
                 int(c.personalised), float(c.weight), json.dumps(c.probabilities, sort_keys=True), c.source),
            )
        return CheckIn(c.user, c.ts, c.label, c.valence, c.arousal, c.confidence, c.personalised, c.weight,
                       dict(c.probabilities), c.source, int(cur.lastrowid or 0))

    def purge_checkins(self, before: dt.datetime, user: str | None = None) -> int:
        """Delete check-ins time-stamped before ``before`` (of every user, or of ``user``); returns how many."""
        q, args = "DELETE FROM wb_checkins WHERE ts < ?", [_iso(before)]
        if user is not None:
            q += " AND user_id = ?"
            args.append(check_user(user))
        with self._tx() as db:
            return int(db.execute(q, args).rowcount)

    def checkins(self, user: str, since: dt.datetime | None = None) -> list[CheckIn]:
        """The user's check-ins, oldest first (optionally only those at or after ``since``)."""
        check_user(user)
        q = ("SELECT id, ts, label, valence, arousal, confidence, personalised, weight, probabilities, source "
             "FROM wb_checkins WHERE user_id = ?")
        args: Sequence[Any] = (user,)
        if since is not None:
            q += " AND ts >= ?"
            args = (user, _iso(since))
        rows = self._db.execute(q + " ORDER BY ts, id", args).fetchall()
        return [
            CheckIn(user, dt.datetime.fromisoformat(r[1]), r[2], float(r[3]), float(r[4]), float(r[5]),
                    bool(r[6]), float(r[7]), json.loads(r[8]), r[9], int(r[0]))
            for r in rows
        ]

    # -- reset / delete ----------------------------------------------------------------------
    def reset_personalisation(self, user: str) -> int:
        """Forget the user's enrolled samples and personal model (check-ins stay). Returns rows removed."""
        check_user(user)
        stored = self.get_model_path(user)
        with self._tx() as db:
            n = db.execute("DELETE FROM wb_enrolments WHERE user_id = ?", (user,)).rowcount
            db.execute("DELETE FROM wb_models WHERE user_id = ?", (user,))
        self.remove_model_files(user, stored)
        return int(n)

    def delete_user(self, user: str) -> dict[str, int]:
        """Delete everything about ``user``: enrolments, model files, check-ins and the user row.

        :func:`vocalis.wellbeing.delete_user_data` is the documented entry point (it also reports
        the files removed).
        """
        return self.delete_user_and_files(user)[0]

    def delete_user_and_files(self, user: str) -> tuple[dict[str, int], list[Path]]:
        """:meth:`delete_user`, also returning the model files removed."""
        check_user(user)
        stored = self.get_model_path(user)
        with self._tx() as db:
            n_enr = db.execute("DELETE FROM wb_enrolments WHERE user_id = ?", (user,)).rowcount
            n_chk = db.execute("DELETE FROM wb_checkins WHERE user_id = ?", (user,)).rowcount
            db.execute("DELETE FROM wb_models WHERE user_id = ?", (user,))
            db.execute("DELETE FROM wb_users WHERE user_id = ?", (user,))
        files = self.remove_model_files(user, stored)
        return {"enrolments": int(n_enr), "checkins": int(n_chk)}, files

    def remove_model_files(self, user: str, stored: Path | None = None, *, current: bool = True) -> list[Path]:
        """Delete ``user``'s personal-model files: ``<user>.personal.npz``/``.json`` (unless
        ``current=False``), leftovers of an interrupted save, and those at ``stored`` (the path the
        database recorded for this user, which may be an older layout); returns the files removed.
        Only files inside :attr:`models_dir` are touched.
        """
        root = self.models_dir.resolve()
        bases = [self.model_path(user)] if current else []
        if stored is not None and (current or Path(stored) != self.model_path(user)):
            bases.append(Path(stored))
        removed: list[Path] = []
        for base in bases:
            for suffix in (".npz", ".json", ".tmp.npz", ".tmp.json"):
                p = base.with_name(base.name + suffix)
                if p.resolve().parent == root and p.is_file():
                    p.unlink()
                    removed.append(p)
        return removed
