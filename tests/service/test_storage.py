"""Storage on SQLite and PostgreSQL: the same Alembic migrations, owner scoping, the outbox claim.

PostgreSQL runs when ``VOCALIS_TEST_POSTGRES_URL`` is set (``eval "$(scripts/postgres.sh)"`` starts a
throwaway cluster and prints it); each test gets its own database.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.service.conftest import make_settings, postgres_url, register
from vocalis.notify.base import AlertInfo, ContactInfo, DeliveryInfo, UserInfo
from vocalis.notify.relay import RetryPolicy, claim, run_once
from vocalis.service import alerts as svc
from vocalis.storage import make_engine, make_session_factory, migrate
from vocalis.storage import repositories as repo
from vocalis.storage.db import SessionFactory, normalise_url
from vocalis.storage.migrate import alembic_config, current_revision
from vocalis.storage.tables import Delivery, Evidence, PredictionRecord, metadata, utcnow


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = postgres_url()
    if base is None:
        pytest.skip('VOCALIS_TEST_POSTGRES_URL is not set (start one with: eval "$(scripts/postgres.sh)")')
    name = f"vocalis_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    head, _, _ = normalise_url(base).rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def factory(db_url: str) -> Iterator[SessionFactory]:
    migrate(db_url)
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def _user(s: Session, email: str) -> str:
    return repo.create_user(s, email=email, password_hash="x").id


def test_migrations_match_the_tables_and_go_down_and_up(db_url: str) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    migrate(db_url)
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()  # type: ignore[arg-type]
    assert current_revision(db_url) == head
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], diff
    command.downgrade(alembic_config(db_url), "base")  # type: ignore[arg-type]
    with engine.connect() as conn:
        assert "users" not in set(engine.dialect.get_table_names(conn))
    migrate(db_url)
    migrate(db_url)  # idempotent
    assert current_revision(db_url) == head
    engine.dispose()


def test_upgrading_keeps_the_predictions_already_stored(db_url: str) -> None:
    """0003 adds the speech columns: the history written before it survives, unchecked (null)."""
    from alembic import command

    command.upgrade(alembic_config(db_url), "0002")  # type: ignore[arg-type]
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.execute(text("INSERT INTO users (id, email, password_hash, created_at) "
                       "VALUES ('u1', 'a@example.org', 'x', :t)"), {"t": utcnow()})
        c.execute(text("INSERT INTO predictions (id, user_id, created_at, label, probabilities, valence, arousal, "
                       "source, duration_s) VALUES ('p1', 'u1', :t, 'calm', :p, 0.1, 0.2, 'upload', 1.5)"),
                  {"t": utcnow(), "p": '{"calm": 1.0}'})
    migrate(db_url)
    with make_session_factory(engine)() as s:
        rec = s.get(PredictionRecord, "p1")
        assert rec is not None and (rec.label, rec.probabilities, rec.duration_s) == ("calm", {"calm": 1.0}, 1.5)
        assert (rec.speech_detected, rec.voiced_s) == (None, None)
    engine.dispose()


def test_repositories_filter_by_owner(factory: SessionFactory) -> None:
    with factory() as s, s.begin():
        a, b = _user(s, "a@example.org"), _user(s, "B@Example.org")
        c = repo.create_contact(s, a, name="M", email="m@example.org", channels="email")
        alert = svc.create_alert(s, a, "manual", 1.0, "x", None, "confirmed")
        repo.add_evidence(s, Evidence(alert_id=alert.id, user_id=a, path="p", content_type="audio/ogg",
                                      size_bytes=1, sha256="0" * 64))
        repo.add_prediction(s, PredictionRecord(user_id=a, label="calm", probabilities={"calm": 1.0},
                                                valence=0.1, arousal=-0.1))
    with factory() as s:
        assert repo.get_user_by_email(s, "b@EXAMPLE.org") is not None
        assert repo.get_contact(s, b, c.id) is None and repo.get_contact(s, a, c.id) is not None
        assert repo.get_alert(s, b, alert.id) is None and repo.get_alert(s, a, alert.id) is not None
        assert repo.list_contacts(s, b) == [] and len(repo.list_contacts(s, a)) == 1
        assert repo.list_alerts(s, b)[1] == 0 and repo.list_alerts(s, a)[1] == 1
        assert repo.list_evidence(s, b, alert.id) == [] and len(repo.list_evidence(s, a, alert.id)) == 1
        assert repo.list_predictions(s, b)[1] == 0 and repo.list_predictions(s, a)[0][0].probabilities == {"calm": 1.0}
        assert not repo.delete_contact(s, b, c.id)


def test_outbox_keys_are_unique_and_times_are_utc(factory: SessionFactory) -> None:
    with factory() as s, s.begin():
        a = _user(s, "a@example.org")
        repo.create_contact(s, a, name="M", phone="+33612345678", channels="sms,call")
        alert = svc.create_alert(s, a, "stream", 0.5, None, svc.Location(1.5, 2.5, 3.0), "confirmed",
                                 now=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
        first = alert.deliveries[0]
    with factory() as s:
        got = repo.get_alert(s, a, alert.id)
        assert got is not None and got.created_at == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
        assert got.created_at.tzinfo is not None and got.latitude == 1.5
    with factory() as s, pytest.raises(IntegrityError), s.begin():  # one outbox row per key
        s.add(Delivery(alert_id=alert.id, contact_id=first.contact_id, channel=first.channel,
                       idempotency_key=first.idempotency_key))
    with factory() as s, pytest.raises(IntegrityError), s.begin():  # foreign keys are enforced (SQLite too)
        s.add(Delivery(alert_id="nope", channel="sms", idempotency_key="k"))


class _Recorder:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def send(self, delivery: DeliveryInfo, alert: AlertInfo, contact: ContactInfo, user: UserInfo) -> str:
        with self._lock:
            self.keys.append(delivery.idempotency_key)
        return "ok"


def test_concurrent_relays_deliver_each_row_once(factory: SessionFactory) -> None:
    with factory() as s, s.begin():
        a = _user(s, "a@example.org")
        for i in range(5):
            repo.create_contact(s, a, name=f"C{i}", email=f"c{i}@example.org", phone="+33612345678",
                                channels="sms,email")
        ids = [svc.create_alert(s, a, "manual").id for _ in range(3)]
    rec = _Recorder()
    now = utcnow()
    policy = RetryPolicy(batch_size=100, max_workers=1)
    errors: list[BaseException] = []

    def relay() -> None:
        try:
            run_once(factory, {"sms": rec, "email": rec}, now, policy=policy)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(rec.keys) == sorted(set(rec.keys)) and len(rec.keys) == 30
    assert claim(factory, now + timedelta(hours=1), policy) == []
    with factory() as s:
        assert {repo.get_alert(s, a, i).status for i in ids} == {"delivered"}  # type: ignore[union-attr]


def test_service_end_to_end_on_backend(db_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from vocalis.service.app import create_app

    rec = _Recorder()
    app = create_app(make_settings(tmp_path, database_url=db_url), notifiers={"email": rec})
    with TestClient(app) as client:
        ann = register(client)
        client.post("/v1/contacts", headers=ann.headers, json={"name": "M", "email": "m@example.org"})
        alert = client.post("/v1/alerts", headers=ann.headers, json={"reason": "test"}).json()
        assert run_once(app.state.session_factory, {"email": rec}) == 1
        got = client.get(f"/v1/alerts/{alert['id']}", headers=ann.headers).json()
        assert got["status"] == "delivered" and got["deliveries"][0]["status"] == "sent"
        assert client.get("/healthz").json()["database"] is True
