"""Wellbeing data over time: stale personal models, time zones, retention and deletion (library and CLI)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import harmonic
from vocalis.errors import ConfigError
from vocalis.wellbeing import (
    CheckIn,
    PersonalModel,
    StaleModelError,
    WellbeingStore,
    aggregate,
    bundle_fingerprint,
    bundle_reference,
    delete_user_data,
    parse_tz,
    purge_checkins,
    recommend,
)
from vocalis.wellbeing import service as wb

UTC = dt.timezone.utc


@pytest.fixture(autouse=True)
def _tones_stand_in_for_voices(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests use tones and noise as stand-ins for a voice: wellbeing clips without speech are
    accepted here (the refusal itself: tests/test_wellbeing.py, tests/service/test_wellbeing_api.py)."""
    monkeypatch.setenv("VOCALIS_WELLBEING_ALLOW_NO_SPEECH", "1")



@pytest.fixture(scope="module")
def bundles() -> dict[str, Any]:
    """The default model, the same graph and features with another calibration, and other features."""
    from vocalis.bundle import load_bundle
    from vocalis.bundle.manifest import Manifest
    from vocalis.bundle.runtime import Bundle

    b = load_bundle()
    d = b.manifest.to_dict()
    recal = Bundle(Manifest.from_dict({**d, "calibration": {"temperature": 1.0}}), b._onnx, "recalibrated")
    other = Bundle(Manifest.from_dict({**d, "features": {**d["features"], "pooling": "mean"}}), b._onnx, "other")
    return {"default": b, "recal": recal, "other": other}


def _embs(rng: np.random.Generator, bundle: Any, n: int, offset: float) -> list[np.ndarray]:
    ref = bundle_reference(bundle._onnx)
    assert ref is not None
    mean, std = ref
    return [(mean + std * (offset + rng.normal(0, 1, mean.size))).astype(np.float32) for _ in range(n)]


def _enrol_two_moods(store: WellbeingStore, bundle: Any, rng: np.random.Generator, user: str = "ann") -> None:
    wb.enrol(store, bundle, user, "happy", _embs(rng, bundle, 5, 0.4))
    wb.enrol(store, bundle, user, "sad", _embs(rng, bundle, 5, -0.4))


# -- stale personal models ----------------------------------------------------------------------------
def test_fingerprints_separate_models_and_feature_extractors(bundles: dict[str, Any]) -> None:
    g0, f0 = bundle_fingerprint(bundles["default"])
    g1, f1 = bundle_fingerprint(bundles["recal"])
    g2, f2 = bundle_fingerprint(bundles["other"])
    assert len(g0) == len(f0) == 64 and len({g0, g1, g2}) == 3
    assert f0 == f1 != f2  # recalibrating keeps the embedding space; other pooling does not


def test_personal_model_is_refitted_for_a_new_global_model_with_the_same_features(
        tmp_path: Path, rng: np.random.Generator, bundles: dict[str, Any]) -> None:
    b, recal = bundles["default"], bundles["recal"]
    with WellbeingStore(tmp_path / "wb.db") as store:
        _enrol_two_moods(store, b, rng)
        pm = wb.personal_model(store, b, "ann")
        assert pm is not None and pm.global_sha256_ == bundle_fingerprint(b)[0]
        assert pm.calibration_["method"] == "leave-one-out" and pm.calibration_["n"] == 10
        assert store.enrolment_features("ann") == {bundle_fingerprint(b)[1]}

        pm2 = wb.personal_model(store, recal, "ann")  # the global model changed: refitted, not mixed
        assert pm2 is not None and pm2.global_sha256_ == bundle_fingerprint(recal)[0]
        path = store.get_model_path("ann")
        assert path is not None and PersonalModel.load(path).global_sha256_ == bundle_fingerprint(recal)[0]
        c, _ = wb.check_in(store, recal, "ann", _embs(rng, recal, 1, 0.4)[0], save=False)
        assert c.personalised and 0 < c.confidence <= 1
        # and back: the saved model follows whichever global model serves
        again = wb.personal_model(store, b, "ann")
        assert again is not None and again.global_sha256_ == bundle_fingerprint(b)[0]


def test_stale_personal_model_with_other_features_raises_clearly(
        tmp_path: Path, rng: np.random.Generator, bundles: dict[str, Any]) -> None:
    b, other = bundles["default"], bundles["other"]
    fitted_on, now = bundle_fingerprint(b)[0][:12], bundle_fingerprint(other)[0][:12]
    with WellbeingStore(tmp_path / "wb.db") as store:
        _enrol_two_moods(store, b, rng)
        with pytest.raises(StaleModelError) as err:
            wb.personal_model(store, other, "ann")
        msg = str(err.value)
        assert f"personal model was fitted on model sha256 {fitted_on}, current model is {now}" in msg
        assert "another feature extractor" in msg and "re-enrol" in msg and "vocalis reset --user ann" in msg
        with pytest.raises(StaleModelError):
            wb.check_in(store, other, "ann", _embs(rng, b, 1, 0.0)[0])
        assert store.checkins("ann") == []
        with pytest.raises(StaleModelError, match="cannot enrol more clips"):  # never mixes embedding spaces
            wb.enrol(store, other, "ann", "happy", _embs(rng, b, 1, 0.4))
        assert store.enrolment_counts("ann") == {"happy": 5, "sad": 5}
        # the model it was fitted with still works; after a reset the new model can be enrolled
        assert wb.personal_model(store, b, "ann") is not None
        store.reset_personalisation("ann")
        wb.enrol(store, other, "ann", "happy", _embs(rng, b, 1, 0.4))
        assert store.enrolment_features("ann") == {bundle_fingerprint(other)[1]}


def test_refit_replaces_a_model_saved_under_the_old_file_layout(
        tmp_path: Path, rng: np.random.Generator, bundles: dict[str, Any]) -> None:
    b = bundles["default"]
    with WellbeingStore(tmp_path / "wb.db") as store:
        _enrol_two_moods(store, b, rng)
        X, y = store.enrolments("ann")
        legacy = store.models_dir / "ann"  # session-1 layout: models/<user>.npz, no fingerprints
        for p in store.models_dir.iterdir():
            p.unlink()
        PersonalModel(b.labels).fit(X, y).save(legacy)
        store.set_model("ann", legacy, len(y))
        pm = wb.personal_model(store, b, "ann")  # same extractor recorded on the rows: refitted
        assert pm is not None and pm.global_sha256_ == bundle_fingerprint(b)[0]
        assert sorted(p.name for p in store.models_dir.iterdir()) == ["ann.personal.json", "ann.personal.npz"]
        assert store.get_model_path("ann") == store.model_path("ann")


def test_enrolments_from_before_the_extractor_record_are_not_reused(
        tmp_path: Path, rng: np.random.Generator, bundles: dict[str, Any]) -> None:
    b = bundles["default"]
    db = tmp_path / "wb.db"
    e = _embs(rng, b, 2, 0.0)
    with sqlite3.connect(db) as con:  # the schema before features_sha256 existed
        con.executescript("""
            CREATE TABLE wb_users (user_id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
            CREATE TABLE wb_enrolments (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
                label TEXT NOT NULL, source TEXT NOT NULL, dim INTEGER NOT NULL, embedding BLOB NOT NULL,
                created_at TEXT NOT NULL);
            INSERT INTO wb_users VALUES ('bob', '2025-01-01T00:00:00+00:00');
        """)
        for lab, x in zip(("happy", "sad"), e):
            con.execute("INSERT INTO wb_enrolments(user_id, label, source, dim, embedding, created_at) "
                        "VALUES ('bob', ?, '', ?, ?, '2025-01-01T00:00:00+00:00')", (lab, x.size, x.tobytes()))
    with WellbeingStore(db) as store:  # the column is added in place
        assert store.enrolment_features("bob") == {None}
        X, y = store.enrolments("bob")
        base = store.model_path("bob")
        PersonalModel(b.labels).fit(X, y).save(base)  # like a version-1 model: no fingerprints
        store.set_model("bob", base, 2)
        with pytest.raises(StaleModelError, match="before Vocalis recorded the feature extractor"):
            wb.personal_model(store, b, "bob")


# -- time zones -----------------------------------------------------------------------------------------
def _ci(user: str, ts: dt.datetime, valence: float = 0.2, label: str = "happy") -> CheckIn:
    return CheckIn(user, ts, label, valence, 0.1, 0.6, probabilities={label: 0.6})


def test_parse_tz_names_the_bad_value() -> None:
    assert parse_tz("Europe/Berlin").key == "Europe/Berlin" and parse_tz("UTC").key == "UTC"
    for bad in ("Mars/Olympus", "europe/berlin", "", " UTC", "../etc/passwd", "/etc/localtime", "x" * 80):
        with pytest.raises(ConfigError, match=r"tz=.* must be an IANA time zone"):
            parse_tz(bad)


def test_a_check_in_near_midnight_lands_on_different_days_in_two_zones() -> None:
    noon, late = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC), dt.datetime(2025, 3, 1, 23, 30, tzinfo=UTC)
    cs = [_ci("u", noon, 0.6), _ci("u", late, -0.8, "sad")]
    utc = aggregate(cs, "day", parse_tz("UTC"))
    assert [(p.start, p.n) for p in utc] == [(dt.date(2025, 3, 1), 2)]
    berlin = aggregate(cs, "day", parse_tz("Europe/Berlin"))  # 23:30 UTC is 00:30 on 2 March in Berlin
    assert [(p.start, p.n) for p in berlin] == [(dt.date(2025, 3, 1), 1), (dt.date(2025, 3, 2), 1)]
    la = aggregate(cs, "day", parse_tz("America/Los_Angeles"))
    assert [(p.start, p.n) for p in la] == [(dt.date(2025, 3, 1), 2)]
    # ISO weeks too: Saturday 1 March 23:30 UTC is Sunday 08:30 in Tokyo, still the week of Monday 24 February;
    # Sunday 2 March 23:30 UTC is Monday in Tokyo, a new week
    sunday = _ci("u", dt.datetime(2025, 3, 2, 23, 30, tzinfo=UTC))
    assert [p.start for p in aggregate([*cs, sunday], "week", parse_tz("UTC"))] == [dt.date(2025, 2, 24)]
    assert [p.start for p in aggregate([*cs, sunday], "week", parse_tz("Asia/Tokyo"))] == [
        dt.date(2025, 2, 24), dt.date(2025, 3, 3)]
    # the tips' "days with check-ins" follow the zone as well
    low = [_ci("u", dt.datetime(2025, 3, d, 23, 30, tzinfo=UTC), -0.8, "sad") for d in (1, 2, 3)]
    assert recommend(low, today=dt.date(2025, 3, 4), tz=parse_tz("Europe/Berlin")).triggered
    assert not recommend(low, today=dt.date(2025, 3, 1), tz=parse_tz("Europe/Berlin")).triggered


def test_history_helper_groups_in_the_given_zone(tmp_path: Path) -> None:
    now = dt.datetime.now(UTC)
    day = (now - dt.timedelta(days=2)).date()
    with WellbeingStore(tmp_path / "wb.db") as store:
        for h, m in ((12, 0), (23, 30)):
            store.add_checkin(_ci("ann", dt.datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)))
        _, rows_utc, _ = wb.history(store, "ann", days=7, now=now)
        _, rows_berlin, _ = wb.history(store, "ann", days=7, now=now, tz=parse_tz("Europe/Berlin"))
    assert [r.n for r in rows_utc] == [2] and [r.n for r in rows_berlin] == [1, 1]
    assert rows_berlin[1].start == day + dt.timedelta(days=1)


# -- retention and deletion ---------------------------------------------------------------------------------
def test_purge_checkins_removes_only_expired_ones(tmp_path: Path) -> None:
    now = dt.datetime(2025, 6, 1, 12, tzinfo=UTC)
    with WellbeingStore(tmp_path / "wb.db") as store:
        for user in ("ann", "bob"):
            for age in (1, 29, 31, 400):
                store.add_checkin(_ci(user, now - dt.timedelta(days=age)))
        assert purge_checkins(store, 30, now=now, user="bob") == 2
        assert len(store.checkins("bob")) == 2 and len(store.checkins("ann")) == 4
        assert purge_checkins(store, 30, now=now) == 2  # every user
        assert [(now - c.ts).days for c in store.checkins("ann")] == [29, 1]
        assert purge_checkins(store, 30, now=now) == 0
        for bad in (0, -3, 1.5, True):
            with pytest.raises(ConfigError, match="retention_days="):
                purge_checkins(store, bad, now=now)  # type: ignore[arg-type]


def test_delete_user_data_removes_rows_and_files_of_that_user_only(
        tmp_path: Path, rng: np.random.Generator, bundles: dict[str, Any]) -> None:
    b = bundles["default"]
    db = tmp_path / "data" / "wb.db"
    with WellbeingStore(db) as store:
        for user in ("x", "x.npz"):  # a user id that looks like another user's file name
            _enrol_two_moods(store, b, rng, user)
            store.add_checkin(_ci(user, dt.datetime.now(UTC)))
        files = {u: sorted(p.name for p in store.models_dir.iterdir() if p.name.startswith(u + ".personal."))
                 for u in ("x", "x.npz")}
        assert files == {"x": ["x.personal.json", "x.personal.npz"],
                         "x.npz": ["x.npz.personal.json", "x.npz.personal.npz"]}
        (store.models_dir / "x.npz.personal.tmp.npz").write_bytes(b"half-written")  # an interrupted save

        d = delete_user_data(store, "x.npz")
        assert (d.user, d.checkins, d.enrolments) == ("x.npz", 1, 10)
        assert sorted(Path(f).name for f in d.files) == ["x.npz.personal.json", "x.npz.personal.npz",
                                                         "x.npz.personal.tmp.npz"]
        assert sorted(p.name for p in store.models_dir.iterdir()) == ["x.personal.json", "x.personal.npz"]
        assert store.checkins("x.npz") == [] and store.enrolment_counts("x.npz") == {}
        assert store.get_model_path("x.npz") is None and "x.npz" not in store.users()
        assert wb.personal_model(store, b, "x") is not None and len(store.checkins("x")) == 1  # untouched
    # by path, idempotent; a missing database is not created
    assert delete_user_data(db, "x.npz").to_dict() == {"user": "x.npz", "checkins": 0, "enrolments": 0, "files": []}
    d2 = delete_user_data(db, "x")
    assert d2.enrolments == 10 and len(d2.files) == 2 and not any((db.parent / "models").iterdir())
    assert delete_user_data(tmp_path / "none" / "wb.db", "x").checkins == 0
    assert not (tmp_path / "none").exists()
    with pytest.raises(ConfigError, match="user="):
        delete_user_data(db, "../x")
    # the deleted rows' bytes are overwritten in the file (PRAGMA secure_delete), not left in free pages
    assert b"x.npz" not in db.read_bytes()


# -- CLI: --tz, --retention-days, stale models ------------------------------------------------------------------
@pytest.fixture
def clips(write_wav: Any) -> dict[str, Path]:
    return {
        "happy1": write_wav("h1.wav", harmonic(260, 1.2, amp=0.5, vibrato=0.06)),
        "happy2": write_wav("h2.wav", harmonic(250, 1.2, amp=0.5, vibrato=0.05)),
        "sad1": write_wav("s1.wav", harmonic(110, 1.2, amp=0.08)),
        "sad2": write_wav("s2.wav", harmonic(115, 1.2, amp=0.08)),
        "check": write_wav("c.wav", harmonic(112, 1.2, amp=0.08)),
    }


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    from vocalis.wellbeing_cli import app

    return CliRunner().invoke(app, list(args), env=env)


def test_cli_history_tz_groups_days_in_that_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "wb.db"
    day = (dt.datetime.now(UTC) - dt.timedelta(days=2)).date()
    with WellbeingStore(db) as store:
        for h, m in ((12, 0), (23, 30)):
            store.add_checkin(_ci("ann", dt.datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)))

    def rows(*extra: str) -> dict[str, Any]:
        res = _invoke("history", "--user", "ann", "--db", str(db), "--json", *extra)
        assert res.exit_code == 0, res.output
        return dict(json.loads(res.output))

    utc = rows("--tz", "UTC")
    assert utc["tz"] == "UTC" and [(r["start"], r["n"]) for r in utc["rows"]] == [(day.isoformat(), 2)]
    berlin = rows("--tz", "Europe/Berlin")
    assert berlin["tz"] == "Europe/Berlin"
    assert [(r["start"], r["n"]) for r in berlin["rows"]] == [(day.isoformat(), 1),
                                                              ((day + dt.timedelta(days=1)).isoformat(), 1)]
    weeks = [r["n"] for r in rows("--tz", "Europe/Berlin", "--period", "week")["rows"]]
    assert weeks == ([1, 1] if day.weekday() == 6 else [2])  # a Sunday's 00:30 in Berlin is the next ISO week
    # default: this computer's zone ($TZ here): 23:30 UTC is 08:30 the next day in Tokyo
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    local = rows()
    assert local["tz"] == "Asia/Tokyo" and [r["n"] for r in local["rows"]] == [1, 1]
    res = _invoke("history", "--user", "ann", "--db", str(db), "--tz", "Europe/Berlin")
    assert res.exit_code == 0 and "day (Europe/Berlin)" in res.output
    for bad in ("Mars/Olympus", "Berlin"):
        res = _invoke("history", "--user", "ann", "--db", str(db), "--tz", bad)
        assert res.exit_code == 2 and f"error: tz='{bad}' must be an IANA time zone" in res.output


def test_cli_mood_at_without_offset_is_wall_clock_in_tz(tmp_path: Path, clips: dict[str, Path]) -> None:
    db = str(tmp_path / "wb.db")
    res = _invoke("mood", "--user", "ann", "--db", db, "--json", "--tz", "Europe/Berlin",
                  "--at", "2025-03-02T00:30", str(clips["check"]))
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ts"] == "2025-03-01T23:30:00+00:00"
    res = _invoke("mood", "--user", "ann", "--db", db, "--tz", "Nowhere/Land", str(clips["check"]))
    assert res.exit_code == 2 and "tz='Nowhere/Land'" in res.output


def test_cli_retention_days_purges_old_checkins(tmp_path: Path, clips: dict[str, Path]) -> None:
    db = tmp_path / "wb.db"
    now = dt.datetime.now(UTC)
    with WellbeingStore(db) as store:
        for user, age in (("ann", 3), ("ann", 40), ("bob", 100)):
            store.add_checkin(_ci(user, now - dt.timedelta(days=age)))
    res = _invoke("history", "--user", "ann", "--db", str(db), "--days", "365", "--retention-days", "30", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["purged"] == 2 and out["n"] == 1  # ann's 40-day-old and bob's 100-day-old check-ins
    with WellbeingStore(db) as store:
        assert store.checkins("bob") == []
        store.add_checkin(_ci("bob", now - dt.timedelta(days=10)))
    # the environment variable sets it for every write: mood purges before storing the new check-in
    res = _invoke("mood", "--user", "ann", "--db", str(db), "--json", str(clips["check"]),
                  env={"VOCALIS_WELLBEING_RETENTION_DAYS": "5"})
    assert res.exit_code == 0, res.output
    with WellbeingStore(db) as store:
        assert len(store.checkins("ann")) == 2 and store.checkins("bob") == []
    res = _invoke("history", "--user", "ann", "--db", str(db), "--retention-days", "0")
    assert res.exit_code == 2 and "retention-days" in res.output


def test_cli_reset_delete_removes_files(tmp_path: Path, clips: dict[str, Path]) -> None:
    db = tmp_path / "data" / "wb.db"
    res = _invoke("enroll", "--user", "ann", "--label", "happy", "--db", str(db), str(clips["happy1"]),
                  str(clips["happy2"]))
    assert res.exit_code == 0, res.output
    assert _invoke("mood", "--user", "ann", "--db", str(db), str(clips["check"])).exit_code == 0
    models = db.parent / "models"
    assert sorted(p.name for p in models.iterdir()) == ["ann.personal.json", "ann.personal.npz"]
    res = _invoke("reset", "--user", "ann", "--db", str(db), "--delete", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["checkins"], out["enrolments"], len(out["files"]), out["deleted"]) == (1, 2, 2, True)
    assert not any(models.iterdir())


def test_cli_refits_for_another_model_or_refuses_to_mix(tmp_path: Path, clips: dict[str, Path],
                                                        bundles: dict[str, Any]) -> None:
    from vocalis.bundle import load_bundle
    from vocalis.bundle.runtime import save_bundle

    b, recal = bundles["default"], bundles["recal"]
    recal_path = save_bundle(tmp_path / "recal.vocalis", recal.manifest, recal._onnx)
    db = tmp_path / "wb.db"
    for label, files in (("happy", ("happy1", "happy2")), ("sad", ("sad1", "sad2"))):
        res = _invoke("enroll", "--user", "ann", "--label", label, "--db", str(db), *(str(clips[f]) for f in files))
        assert res.exit_code == 0, res.output
    res = _invoke("mood", "--user", "ann", "--db", str(db), "--json", "--model", str(recal_path), str(clips["check"]))
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["personalised"] is True
    meta = json.loads((db.parent / "models" / "ann.personal.json").read_text())
    assert meta["global_sha256"] == bundle_fingerprint(recal)[0] == bundle_fingerprint(load_bundle(recal_path))[0]
    # embeddings of an unknown extractor cannot be reused: a clean error, nothing mixed
    with sqlite3.connect(db) as con:
        con.execute("UPDATE wb_enrolments SET features_sha256 = ?", ("f" * 64,))
    res = _invoke("mood", "--user", "ann", "--db", str(db), str(clips["check"]))
    assert res.exit_code == 2, res.output
    assert (f"error: user='ann': personal model was fitted on model sha256 {bundle_fingerprint(recal)[0][:12]}, "
            f"current model is {bundle_fingerprint(b)[0][:12]}") in res.output
    assert "vocalis reset --user ann" in res.output
    with WellbeingStore(db) as store:
        assert len(store.checkins("ann")) == 1  # only the first, personalised one
