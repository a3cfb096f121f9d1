"""Wellbeing: personal model, store, insight (aggregation, tips, plots) and the CLI commands."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import harmonic, noise
from vocalis.errors import ConfigError, DataError, ModelError
from vocalis.wellbeing import (
    DISCLAIMER,
    TIPS,
    CheckIn,
    PersonalModel,
    WellbeingStore,
    aggregate,
    plot_trend,
    recommend,
)
from vocalis.wellbeing.personal import LOO_MAX, apply_temperature, bundle_reference, fit_temperature

LABELS = ["neutral", "happy", "sad", "angry"]


@pytest.fixture(autouse=True)
def _tones_stand_in_for_voices(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests use tones and noise as stand-ins for a voice: wellbeing clips without speech are
    accepted here (the refusal itself: tests/test_wellbeing.py, tests/service/test_wellbeing_api.py)."""
    monkeypatch.setenv("VOCALIS_WELLBEING_ALLOW_NO_SPEECH", "1")


# -- personal model ---------------------------------------------------------------------------------
def _population(rng: np.random.Generator, d: int = 64, sep: float = 1.5) -> np.ndarray:
    """Class means of the population (one row per label)."""
    return rng.normal(0, sep, (len(LABELS), d))



def _speaker(rng: np.random.Generator, means: np.ndarray, n_per: int, shift: np.ndarray, scale: float,
             noise_sd: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(len(LABELS)), n_per)
    x = means[y] + rng.normal(0, noise_sd, (len(y), means.shape[1]))
    return x * scale + shift, y


def _global_proba(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """A 'global model': softmax of negative squared distance to the population class means."""
    s = -((x[:, None, :] - means[None]) ** 2).sum(-1) / (2 * x.shape[1])
    s -= s.max(1, keepdims=True)
    p = np.exp(4 * s)
    return p / p.sum(1, keepdims=True)


def _ua(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([np.mean(p.argmax(1)[y == c] == c) for c in np.unique(y)]))


def test_personalisation_beats_global_for_a_shifted_scaled_speaker(rng: np.random.Generator) -> None:
    means = _population(rng, sep=0.5)
    # this user's voice sits away from the population, toward the 'sad' region (a low, soft voice)
    shift = 1.5 * (means[2] - means.mean(0)) + rng.normal(0, 1.0, means.shape[1])
    xe, ye = _speaker(rng, means, 5, shift, 1.6)
    xt, yt = _speaker(rng, means, 30, shift, 1.6)
    pm = PersonalModel(LABELS).fit(xe, [LABELS[i] for i in ye])
    pg = _global_proba(xt, means)
    ua_global = _ua(yt, pg)
    ua_pers = _ua(yt, pm.predict_proba(xt, pg))
    assert ua_pers > ua_global + 0.2, (ua_global, ua_pers)
    assert ua_pers > 0.8
    # probabilities stay a distribution
    p = pm.predict_proba(xt, pg)
    assert np.allclose(p.sum(1), 1) and np.all(p >= 0)


def test_adapt_moves_user_mean_onto_reference_once_every_mood_is_enrolled(rng: np.random.Generator) -> None:
    x = rng.normal(5, 2, (4 * len(LABELS), 8))
    ref = np.zeros(8)
    every = [lab for lab in LABELS for _ in range(4)]
    pm = PersonalModel(LABELS).fit(x, every, reference_mean=ref, reference_scale=np.ones(8))
    assert pm.shifts and np.allclose(pm.adapt(x).mean(0), 0, atol=1e-5)
    assert np.array_equal(pm.scale_, np.ones(8))
    # some moods only: their mean is not the speaker's, so the global input is left unchanged
    # (the head still learns them)
    some = PersonalModel(LABELS).fit(x[:12], ["happy", "sad"] * 6, reference_mean=ref, reference_scale=np.ones(8))
    assert not some.shifts and np.allclose(some.adapt(x), x.astype(np.float32)) and some.weight > 0
    # without a reference mean the global input is left unchanged
    pm2 = PersonalModel(LABELS).fit(x, every)
    assert not pm2.shifts and np.allclose(pm2.adapt(x), x.astype(np.float32))


def test_weight_grows_with_samples(rng: np.random.Generator) -> None:
    means = _population(rng)
    weights = []
    for n_per in (1, 2, 5, 20):
        x, y = _speaker(rng, means, n_per, np.zeros(means.shape[1]), 1.0)
        weights.append(PersonalModel(LABELS, k0=2.0).fit(x, [LABELS[i] for i in y]).weight)
    assert all(a < b for a, b in itertools.pairwise(weights))
    assert weights[0] == pytest.approx(1 / 3) and 0 < weights[-1] < 1


def test_single_class_enrolment_is_the_global_model(rng: np.random.Generator) -> None:
    x = rng.normal(0, 1, (3, 16))
    pm = PersonalModel(LABELS).fit(x, ["sad"] * 3)
    pg = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert pm.weight == 0.0
    assert np.allclose(pm.predict_proba(x[:1], pg), pg)


def test_unenrolled_classes_keep_their_global_probability(rng: np.random.Generator) -> None:
    x = np.r_[rng.normal(0, 1, (4, 16)), rng.normal(3, 1, (4, 16))]
    pm = PersonalModel(LABELS).fit(x, ["happy"] * 4 + ["sad"] * 4)
    pg = np.array([[0.4, 0.1, 0.1, 0.4]])
    p = pm.predict_proba(x[:1], pg)
    assert p[0, 0] == pytest.approx(0.4) and p[0, 3] == pytest.approx(0.4)
    assert p[0, 1] > p[0, 2]  # the head recognises the enrolled 'happy' clip


def test_save_load_round_trip_is_exact_and_pickle_free(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.normal(0, 1, (9, 32))
    y = ["happy", "sad", "angry"] * 3
    pm = PersonalModel(LABELS, k0=3.0).fit(x, y, reference_mean=rng.normal(0, 1, 32))
    npz, meta = pm.save(tmp_path / "models" / "alice")
    assert npz.name == "alice.npz" and meta.name == "alice.json"
    back = PersonalModel.load(tmp_path / "models" / "alice")
    for k, v in pm.to_arrays().items():
        assert np.array_equal(v, back.to_arrays()[k]), k
    assert back.get_config() == pm.get_config() and back.classes_ == pm.classes_ and back.n_ == pm.n_
    xt = rng.normal(0, 1, (5, 32))
    pg = rng.dirichlet(np.ones(4), 5)
    assert np.array_equal(pm.predict_proba(xt, pg), back.predict_proba(xt, pg))
    # no object arrays / pickles inside: every member loads with allow_pickle=False and is numeric
    with zipfile.ZipFile(npz) as z:
        for name in z.namelist():
            assert name.endswith(".npy")
    with np.load(npz, allow_pickle=False) as z:
        assert all(z[k].dtype.kind == "f" for k in z.files)
    json.loads(meta.read_text())


def test_personal_model_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(ConfigError):
        PersonalModel([])
    with pytest.raises(ConfigError, match="k0"):
        PersonalModel(LABELS, k0=0)
    with pytest.raises(DataError, match="not among"):
        PersonalModel(LABELS).fit(rng.normal(0, 1, (2, 4)), ["happy", "bored"])
    with pytest.raises(DataError, match="len"):
        PersonalModel(LABELS).fit(rng.normal(0, 1, (2, 4)), ["happy"])
    with pytest.raises(ModelError, match="not fitted"):
        PersonalModel(LABELS).predict_proba(np.zeros((1, 4)), np.full((1, 4), 0.25))
    with pytest.raises(ModelError, match="not found"):
        PersonalModel.load(tmp_path / "nobody")
    pm = PersonalModel(LABELS).fit(rng.normal(0, 1, (4, 4)), ["happy", "sad"] * 2)
    with pytest.raises(DataError, match="expects 4"):
        pm.predict_proba(np.zeros((1, 5)), np.full((1, 4), 0.25))


# -- calibration of the blend ------------------------------------------------------------------------
def _nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())


def test_fit_temperature_direction_and_prior() -> None:
    y = np.array([0, 1, 1, 0] * 10)
    over = np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.99, 0.01]] * 10)  # 75 % right at 0.99
    assert fit_temperature(over, y) > 1.5
    under = np.array([[0.55, 0.45], [0.45, 0.55]] * 20)  # always right at 0.55
    assert fit_temperature(under, np.array([0, 1] * 20)) < 0.7
    # two predictions barely move T (log-normal prior centred on 1); many move it further
    assert abs(np.log(fit_temperature(over[:2], y[:2]))) < abs(np.log(fit_temperature(over, y)))
    p = np.array([[0.7, 0.2, 0.1]])
    assert np.allclose(apply_temperature(p, 1.0), p)
    assert apply_temperature(p, 2.0)[0, 0] < 0.7 < apply_temperature(p, 0.5)[0, 0]
    with pytest.raises(DataError, match="rows"):
        fit_temperature(over, y[:3])


def test_blend_temperature_from_held_out_enrolment_improves_calibration() -> None:
    """An overconfident head (beta=30): the temperature fitted on leave-one-out predictions of the
    enrolled clips lowers NLL and ECE on the user's unseen clips; without it the blend stays overconfident."""
    from vocalis.training.metrics import expected_calibration_error

    before, after, ece_before, ece_after, temps = [], [], [], [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        means = _population(rng, sep=0.5)
        shift = 1.5 * (means[2] - means.mean(0)) + rng.normal(0, 1.0, means.shape[1])
        xe, ye = _speaker(rng, means, 10, shift, 1.6, noise_sd=2.0)
        xt, yt = _speaker(rng, means, 50, shift, 1.6, noise_sd=2.0)

        def g(x: np.ndarray, means: np.ndarray = means) -> np.ndarray:
            return _global_proba(x, means)

        labels = [LABELS[i] for i in ye]
        raw = PersonalModel(LABELS, beta=30.0).fit(xe, labels)
        cal = PersonalModel(LABELS, beta=30.0).fit(xe, labels, global_proba=g)
        assert raw.temperature_ == 1.0 and raw.calibration_["method"] == "global"
        assert cal.calibration_["method"] == "leave-one-out" and cal.calibration_["n"] == len(ye)
        assert cal.calibration_["nll_after"] <= cal.calibration_["nll_before"]
        p_raw, p_cal = raw.predict_proba(xt, g(xt)), cal.predict_proba(xt, g(xt))
        assert np.array_equal(p_raw.argmax(1), p_cal.argmax(1))  # a temperature never changes the mood
        assert np.allclose(p_cal.sum(1), 1)
        before.append(_nll(p_raw, yt))
        after.append(_nll(p_cal, yt))
        ece_before.append(expected_calibration_error(p_raw, yt))
        ece_after.append(expected_calibration_error(p_cal, yt))
        temps.append(cal.temperature_)
    assert np.median(temps) > 1.3, temps
    assert np.mean(after) < np.mean(before) - 0.1, (before, after)
    assert np.mean(ece_after) < np.mean(ece_before) - 0.05, (ece_before, ece_after)


def test_few_enrolled_clips_keep_the_global_calibration(rng: np.random.Generator) -> None:
    means = _population(rng)
    shift = np.zeros(means.shape[1])
    calls: list[int] = []

    def g(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return _global_proba(x, means)

    # one clip per mood: leaving one out removes its mood from the head, so nothing can be scored
    x1, y1 = _speaker(rng, means, 1, shift, 1.0)
    pm = PersonalModel(LABELS).fit(x1, [LABELS[i] for i in y1], global_proba=g)
    assert pm.temperature_ == 1.0 and pm.calibration_ == {"method": "global", "n": 0} and not calls
    # 2 per mood but min_calibration=12 > 8 held-out predictions: still T = 1
    x2, y2 = _speaker(rng, means, 2, shift, 1.0)
    pm2 = PersonalModel(LABELS, min_calibration=12).fit(x2, [LABELS[i] for i in y2], global_proba=g)
    assert pm2.temperature_ == 1.0 and pm2.calibration_["n"] == 8
    plain = PersonalModel(LABELS, min_calibration=12).fit(x2, [LABELS[i] for i in y2])
    assert np.allclose(pm2.predict_proba(x2, g(x2)), plain.predict_proba(x2, g(x2)))
    # above LOO_MAX enrolled clips the held-out predictions come from 10 folds
    x3, y3 = _speaker(rng, means, LOO_MAX // len(LABELS) + 2, shift, 1.0)
    pm3 = PersonalModel(LABELS).fit(x3, [LABELS[i] for i in y3], global_proba=g)
    assert pm3.calibration_["method"] == "10-fold" and pm3.calibration_["n"] == len(y3)
    with pytest.raises(ConfigError, match="min_calibration"):
        PersonalModel(LABELS, min_calibration=1)


def test_calibration_and_fingerprints_survive_save_load(tmp_path: Path, rng: np.random.Generator) -> None:
    means = _population(rng)
    x, y = _speaker(rng, means, 3, np.zeros(means.shape[1]), 1.0)
    pm = PersonalModel(LABELS, beta=20.0).fit(x, [LABELS[i] for i in y], global_proba=lambda z: _global_proba(z, means),
                                              global_sha256="a" * 64, features_sha256="b" * 64)
    assert pm.temperature_ != 1.0
    pm.save(tmp_path / "m")
    back = PersonalModel.load(tmp_path / "m")
    assert back.temperature_ == pm.temperature_ and back.calibration_ == pm.calibration_
    assert back.global_sha256_ == "a" * 64 and back.features_sha256_ == "b" * 64
    pg = _global_proba(x, means)
    assert np.array_equal(back.predict_proba(x, pg), pm.predict_proba(x, pg))
    # a version-1 file (before calibration and fingerprints) loads as an uncalibrated blend of an unknown model
    doc = json.loads((tmp_path / "m.json").read_text())
    for key in ("temperature", "calibration", "global_sha256", "features_sha256"):
        doc.pop(key)
    doc["version"] = 1
    (tmp_path / "m.json").write_text(json.dumps(doc))
    old = PersonalModel.load(tmp_path / "m")
    assert old.temperature_ == 1.0 and old.global_sha256_ == ""


def test_bundle_reference_reads_the_default_scaler() -> None:
    from vocalis.bundle import load_bundle

    b = load_bundle()
    ref = bundle_reference(b._onnx)
    assert ref is not None
    mean, std = ref
    assert mean.shape == std.shape == (3840,) and np.all(std > 0)
    assert bundle_reference(b"not onnx") is None


# -- store -------------------------------------------------------------------------------------------
def _checkin(user: str, day: dt.date, valence: float, arousal: float = -0.3, label: str = "sad",
             hour: int = 9) -> CheckIn:
    ts = dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc)
    return CheckIn(user, ts, label, valence, arousal, 0.7, probabilities={label: 0.7})


def test_store_round_trip_reset_and_delete(tmp_path: Path, rng: np.random.Generator) -> None:
    db = tmp_path / "wb.db"
    with WellbeingStore(db) as s:
        e = rng.normal(0, 1, 16).astype(np.float32)
        s.add_enrolment("alice", "happy", e, "a.wav")
        s.add_enrolment("alice", "sad", e + 1, "b.wav")
        s.add_enrolment("bob", "sad", e, "c.wav")
        X, y = s.enrolments("alice")
        assert X.shape == (2, 16) and y == ["happy", "sad"] and np.array_equal(X[0], e)
        assert s.enrolment_counts("alice") == {"happy": 1, "sad": 1}
        c = s.add_checkin(_checkin("alice", dt.date(2025, 3, 1), -0.5))
        assert c.id is not None
        s.add_checkin(_checkin("alice", dt.date(2025, 2, 28), 0.5, label="happy"))
        got = s.checkins("alice")
        assert [g.valence for g in got] == [0.5, -0.5]  # oldest first
        assert got[1].probabilities == {"sad": 0.7} and got[1].ts.tzinfo is not None
        assert len(s.checkins("alice", since=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))) == 1
        base = s.model_path("alice")
        PersonalModel(LABELS).fit(X, y).save(base)
        s.set_model("alice", base, 2)
        assert s.get_model_path("alice") == base
        assert s.reset_personalisation("alice") == 2
        assert s.enrolments("alice")[1] == [] and s.get_model_path("alice") is None
        assert not base.with_suffix(".npz").exists()
        assert len(s.checkins("alice")) == 2  # reset keeps the history
        assert s.delete_user("alice") == {"enrolments": 0, "checkins": 2}
        assert s.checkins("alice") == [] and "alice" not in s.users()
        assert s.enrolment_counts("bob") == {"sad": 1}  # other users untouched
    with WellbeingStore(db) as s:  # persisted on disk
        assert s.users() == ["bob"]


def test_store_rejects_bad_user_ids(tmp_path: Path) -> None:
    with WellbeingStore(tmp_path / "wb.db") as s:
        for bad in ("", "../etc", "a/b", "x" * 65, ".hidden"):
            with pytest.raises(ConfigError, match="user="):
                s.checkins(bad)


def test_default_db_path_honours_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vocalis.wellbeing import default_db_path

    monkeypatch.setenv("VOCALIS_DATA_DIR", str(tmp_path))
    assert default_db_path() == tmp_path / "wellbeing.db"


# -- insight -----------------------------------------------------------------------------------------
def test_aggregate_by_day_and_week() -> None:
    d0 = dt.date(2025, 3, 3)  # a Monday
    cs = [_checkin("u", d0, -0.4, hour=8), _checkin("u", d0, 0.2, label="happy", hour=20),
          _checkin("u", d0 + dt.timedelta(days=1), 0.6, label="happy"),
          _checkin("u", d0 + dt.timedelta(days=8), -0.2)]
    days = aggregate(cs, "day")
    assert [p.start for p in days] == [d0, d0 + dt.timedelta(days=1), d0 + dt.timedelta(days=8)]
    assert days[0].n == 2 and days[0].valence == pytest.approx(-0.1)
    weeks = aggregate(cs, "week")
    assert [p.start for p in weeks] == [d0, d0 + dt.timedelta(days=7)]
    assert weeks[0].n == 3 and weeks[0].valence == pytest.approx((-0.4 + 0.2 + 0.6) / 3)
    assert weeks[0].top_label == "happy"
    with pytest.raises(ConfigError):
        aggregate(cs, "month")
    # day boundaries follow the given time zone: 20:00 UTC is the next day at UTC+5
    tz = dt.timezone(dt.timedelta(hours=5))
    assert aggregate(cs[:2], "day", tz=tz)[1].start == d0 + dt.timedelta(days=1)


def test_recommendations_after_sustained_negative_mood_only() -> None:
    today = dt.date(2025, 3, 10)
    day = [today - dt.timedelta(days=i) for i in range(5)][::-1]
    low = [_checkin("u", d, -0.6, arousal=-0.4) for d in day[:3]] + [_checkin("u", d, 0.3) for d in day[3:]]
    adv = recommend(low, today=today)
    assert adv.triggered and adv.tips and adv.disclaimer == DISCLAIMER
    assert any(t.key in ("move", "activate") for t in adv.tips)  # low-arousal tips
    assert all(t.source for t in adv.tips)
    tense = [_checkin("u", d, -0.6, arousal=0.7, label="fear") for d in day]
    assert any(t.key in ("breathe", "ground", "worry") for t in recommend(tense, today=today).tips)
    # 2 of 5 negative days, a single bad day with many check-ins, or old history: no tips
    two = [_checkin("u", d, -0.6) for d in day[:2]] + [_checkin("u", d, 0.3) for d in day[2:]]
    assert not recommend(two, today=today).triggered
    one_day = [_checkin("u", today, -0.9, hour=h) for h in range(8, 20)]
    assert not recommend(one_day, today=today).triggered
    old = [_checkin("u", d - dt.timedelta(days=60), -0.8) for d in day]
    none = recommend(old, today=today)
    assert not none.triggered and not none.tips and none.disclaimer == DISCLAIMER


def test_disclaimer_and_tip_library() -> None:
    assert "not a medical device" in DISCLAIMER
    assert "emergency" in DISCLAIMER and "Samaritans" in DISCLAIMER
    sources = " ".join(t.source for t in TIPS)
    assert "NHS" in sources and "WHO" in sources
    assert len({t.key for t in TIPS}) == len(TIPS)


def test_plot_trend_writes_png(tmp_path: Path) -> None:
    d0 = dt.date(2025, 3, 3)
    cs = [_checkin("u", d0 + dt.timedelta(days=i), float(np.sin(i))) for i in range(10)]
    p = plot_trend(cs, tmp_path / "plots" / "trend.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    empty = plot_trend([], tmp_path / "empty.png")
    assert empty.read_bytes()[:4] == b"\x89PNG"


# -- CLI (real default model on synthetic voiced tones) ----------------------------------------------
@pytest.fixture
def cli_env(tmp_path: Path, write_wav: object) -> dict[str, Path]:
    w = write_wav  # type: ignore[assignment]
    files = {
        "happy1": w("h1.wav", harmonic(260, 1.2, amp=0.5, vibrato=0.06)),  # type: ignore[operator]
        "happy2": w("h2.wav", harmonic(250, 1.2, amp=0.5, vibrato=0.05)),  # type: ignore[operator]
        "sad1": w("s1.wav", harmonic(110, 1.2, amp=0.08)),  # type: ignore[operator]
        "sad2": w("s2.wav", harmonic(115, 1.2, amp=0.08)),  # type: ignore[operator]
        "check": w("c.wav", harmonic(112, 1.2, amp=0.08)),  # type: ignore[operator]
        "noise": w("n.wav", noise(1.0)),  # type: ignore[operator]
    }
    return {**files, "db": tmp_path / "data" / "wb.db"}


def test_cli_enroll_mood_history_reset(cli_env: dict[str, Path], tmp_path: Path) -> None:
    from vocalis.wellbeing_cli import app

    r = CliRunner()
    db = str(cli_env["db"])
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, "--json", "--at", "2025-03-01T09:00",
                         str(cli_env["check"])])
    assert res.exit_code == 0, res.output
    first = json.loads(res.output)
    assert first["personalised"] is False and 0 < first["confidence"] <= 1
    assert -1 <= first["valence"] <= 1 and first["advice"]["disclaimer"] == DISCLAIMER

    res = r.invoke(app, ["enroll", "--user", "ann", "--label", "happy", "--db", db, "--json",
                         str(cli_env["happy1"]), str(cli_env["happy2"])])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["weight"] == 0.0  # one mood only: no head yet
    res = r.invoke(app, ["enroll", "--user", "ann", "--label", "sadness", "--db", db, "--json",
                         str(cli_env["sad1"]), str(cli_env["sad2"])])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["counts"] == {"happy": 2, "sad": 2} and out["weight"] == pytest.approx(0.5)
    assert Path(out["model"]).is_file()

    for i in range(3):
        res = r.invoke(app, ["mood", "--user", "ann", "--db", db, "--json", "--at", f"2025-03-0{i + 2}T09:00",
                             str(cli_env["check"])])
        assert res.exit_code == 0, res.output
        m = json.loads(res.output)
        assert m["personalised"] is True and m["weight"] == pytest.approx(0.5)
        assert m["probabilities"]["sad"] > m["probabilities"]["happy"]

    plot = tmp_path / "trend.png"
    res = r.invoke(app, ["history", "--user", "ann", "--db", db, "--days", "100000", "--plot", str(plot), "--json"])
    assert res.exit_code == 0, res.output
    h = json.loads(res.output)
    assert h["n"] == 4 and len(h["rows"]) == 4 and plot.read_bytes()[:4] == b"\x89PNG"
    res = r.invoke(app, ["history", "--user", "ann", "--db", db, "--days", "100000"])
    assert res.exit_code == 0 and "not a medical device" in res.output

    res = r.invoke(app, ["reset", "--user", "ann", "--db", db, "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["enrolments"] == 4
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, "--json", "--no-save", str(cli_env["check"])])
    assert json.loads(res.output)["personalised"] is False
    res = r.invoke(app, ["reset", "--user", "ann", "--db", db, "--delete", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["checkins"] == 4
    # a name with no data (a typo, or one already erased) is an error, not a successful reset
    for extra in ([], ["--delete"]):
        res = r.invoke(app, ["reset", "--user", "ann", "--db", db, *extra])
        assert res.exit_code == 2 and "user='ann' has no wellbeing data" in res.output
        assert "nothing was reset" in res.output and "Traceback" not in res.output


def test_cli_errors_are_clean(cli_env: dict[str, Path]) -> None:
    from vocalis.wellbeing_cli import app

    r = CliRunner()
    db = str(cli_env["db"])
    res = r.invoke(app, ["enroll", "--user", "ann", "--label", "bored-ish", "--db", db, str(cli_env["sad1"])])
    assert res.exit_code == 2 and "label=" in res.output
    res = r.invoke(app, ["mood", "--user", "../x", "--db", db, str(cli_env["sad1"])])
    assert res.exit_code == 2 and "user=" in res.output
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, str(cli_env["db"].parent / "missing.wav")])
    assert res.exit_code == 2 and "error:" in res.output
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, "--at", "yesterday", str(cli_env["sad1"])])
    assert res.exit_code == 2 and "at=" in res.output
    import soundfile as sf

    quiet = cli_env["sad1"].parent / "quiet.wav"
    sf.write(quiet, np.zeros(16_000, np.float32), 16_000)  # a silent check-in: refused, not "calm"
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, "--no-save", str(quiet)])
    assert res.exit_code == 2 and "quiet.wav: no audible sound" in res.output


def test_cli_commands_have_help_and_register() -> None:
    import typer

    from vocalis.wellbeing_cli import app, register

    r = CliRunner()
    for cmd in ("enroll", "mood", "history", "reset"):
        res = r.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "--user" in res.output, cmd
    parent = typer.Typer()

    @parent.command()
    def other() -> None:
        """Another command."""

    register(parent)
    res = r.invoke(parent, ["mood", "--help"])
    assert res.exit_code == 0 and "Check in" in res.output


# -- benchmark report ---------------------------------------------------------------------------------
def test_report_renders_personalisation_ece_and_old_results_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    make_report = importlib.import_module("make_report")
    meta = {"machine": "m", "date": "d", "commit": "c", "command": "python benchmarks/personalisation.py"}
    row = {"k": 5, "weight": 0.714, "ua8_global": 0.75, "ua8_personal": 0.9, "valence_global": 0.8,
           "valence_personal": 0.9, "ua8_global_untuned_actors": 0.7, "ua8_personal_untuned_actors": 0.85}
    old = "\n".join(make_report.personalisation_lines({**meta, "rows": [row]}))
    assert "| ECE global |" in old and "| 0.700 / 0.850 | – | – |" in old
    assert "re-run `python benchmarks/personalisation.py`" in old
    new = "\n".join(make_report.personalisation_lines(
        {**meta, "rows": [{**row, "ece_global": 0.061, "ece_blend": 0.139, "ece_personal": 0.07}]}))
    assert "| 0.061 | 0.139 → **0.070** |" in new and "re-run" not in new
    assert "_not run yet_" in "\n".join(make_report.personalisation_lines(None))


def test_cli_refuses_clips_without_speech_and_stores_nothing(cli_env: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A tone or a noise has no mood: by default it is refused (exit 2, the peak and the rule named)
    and nothing is stored; a real voice is taken; --allow-no-speech takes anything audible."""
    from tests.conftest import corpus_dir
    from vocalis.audio.vad import silero_onnx_path
    from vocalis.wellbeing_cli import app

    if silero_onnx_path() is None:
        pytest.skip("silero-vad is not installed: nothing can tell speech from other sound")
    monkeypatch.delenv("VOCALIS_WELLBEING_ALLOW_NO_SPEECH")
    r = CliRunner()
    db = str(cli_env["db"])
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, str(cli_env["noise"])])
    assert res.exit_code == 2, res.output
    assert "n.wav: no speech heard: voice activity peaked at 0." in res.output
    assert "and must reach 0.5 (Silero VAD, 32 ms frames)" in res.output
    assert "nothing was stored" in res.output
    voice = sorted((corpus_dir("ravdess") / "Actor_01").glob("03-01-03-*.flac"))[0]  # happy, spoken
    # one clip without speech among the enrolled ones: none of them is stored
    res = r.invoke(app, ["enroll", "--user", "ann", "--label", "happy", "--db", db, str(voice), str(cli_env["happy1"])])
    assert res.exit_code == 2 and "h1.wav: no speech heard" in res.output, res.output
    res = r.invoke(app, ["history", "--user", "ann", "--db", db, "--json"])
    assert json.loads(res.output)["n"] == 0, res.output
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, "--json", str(voice)])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["mood", "--user", "ann", "--db", db, "--json", "--allow-no-speech", str(cli_env["noise"])])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["history", "--user", "ann", "--db", db, "--json"])
    assert json.loads(res.output)["n"] == 2, res.output
