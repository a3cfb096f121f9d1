"""Library-level wellbeing operations shared by front ends (the web service; the CLI could use them too).

Each function takes an open :class:`~vocalis.wellbeing.store.WellbeingStore`, a loaded vector-feature
bundle and a validated user id, and mirrors the logic of ``vocalis enroll`` / ``mood`` / ``history``
in :mod:`vocalis.wellbeing_cli`. No audio decoding happens here: callers pass embeddings
(``bundle.features(audio, SAMPLE_RATE)``), so each front end keeps its own I/O and limits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vocalis.errors import ConfigError, DataError, ModelError
from vocalis.wellbeing.insight import Advice, Period, aggregate, recommend
from vocalis.wellbeing.personal import PersonalModel, bundle_reference
from vocalis.wellbeing.store import USER_RE, CheckIn, WellbeingStore, check_user


def store_user_id(external_id: str) -> str:
    """A store-safe user id for an external one: unchanged when valid, else ``u-`` + a SHA-256 prefix.

    >>> store_user_id("0f3a9c")
    '0f3a9c'
    >>> store_user_id("ann@example.org")[:2], len(store_user_id("ann@example.org"))
    ('u-', 42)
    """
    if isinstance(external_id, str) and USER_RE.match(external_id):
        return external_id
    return check_user("u-" + hashlib.sha256(str(external_id).encode()).hexdigest()[:40])


def check_vector_bundle(bundle: Any) -> Any:
    """``bundle`` if it takes vector features (personalisation needs embeddings), else :class:`ModelError`."""
    if bundle.manifest.input_kind != "vector":
        raise ModelError(f"model={bundle.source} takes frame features; personalisation needs a vector-feature bundle")
    return bundle


def check_label(bundle: Any, label: str) -> str:
    """The canonical form of ``label`` if it is one of the model's labels, else :class:`ConfigError`."""
    from vocalis.labels import normalise_label

    lab = normalise_label(label)
    if lab not in bundle.labels:
        raise ConfigError(f"label={label!r} must be one of the model's labels {bundle.labels}")
    return lab


@dataclass(frozen=True)
class Enrolment:
    """Outcome of :func:`enrol`: the label, how many clips were added, per-label counts, blend weight."""

    label: str
    added: int
    counts: dict[str, int]
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "added": self.added, "counts": self.counts, "weight": round(self.weight, 4),
                "personalised": self.weight > 0}


def enrol(store: WellbeingStore, bundle: Any, user: str, label: str, embeddings: Sequence[np.ndarray],
          sources: Sequence[str] | None = None) -> Enrolment:
    """Store labelled embeddings for ``user`` and refit + save their personal model (as ``vocalis enroll``)."""
    check_user(user)
    check_vector_bundle(bundle)
    lab = check_label(bundle, label)
    if not embeddings:
        raise DataError("at least one embedding is required to enrol")
    srcs = list(sources) if sources is not None else [""] * len(embeddings)
    X0, _ = store.enrolments(user)
    if X0.shape[0] and X0.shape[1] != np.asarray(embeddings[0]).size:
        raise DataError(f"user={user!r} enrolled with a different model ({X0.shape[1]}-d embeddings); "
                        "reset personalisation first")
    for e, s in zip(embeddings, srcs):
        store.add_enrolment(user, lab, e, source=s)
    X, y = store.enrolments(user)
    ref = bundle_reference(bundle._onnx)
    pm = PersonalModel(bundle.labels).fit(X, y, reference_mean=ref[0] if ref else None,
                                          reference_scale=ref[1] if ref else None)
    base = store.model_path(user)
    pm.save(base)
    store.set_model(user, base, pm.n_)
    return Enrolment(lab, len(embeddings), store.enrolment_counts(user), pm.weight)


def personal_model(store: WellbeingStore, bundle: Any, user: str) -> PersonalModel | None:
    """The user's saved personal model, checked against ``bundle``'s labels (``None`` if not enrolled)."""
    mpath = store.get_model_path(user)
    if mpath is None:
        return None
    pm = PersonalModel.load(mpath)
    if pm.labels != bundle.labels:
        raise ModelError(f"user={user!r}'s personal model has labels {pm.labels}, the model {bundle.labels}; "
                         "reset personalisation and enrol again")
    return pm


def check_in(store: WellbeingStore, bundle: Any, user: str, embedding: np.ndarray, *,
             ts: dt.datetime | None = None, source: str = "", save: bool = True) -> tuple[CheckIn, Advice]:
    """Predict a check-in (personalised once enrolled), store it and return it with the advice (as ``vocalis mood``)."""
    check_user(user)
    check_vector_bundle(bundle)
    ts = ts or dt.datetime.now(dt.timezone.utc)
    emb = np.asarray(embedding, dtype=np.float32)
    pm = personal_model(store, bundle, user)
    personalised, weight = False, 0.0
    if pm is not None:
        pg = bundle.predict_proba_features(pm.adapt(emb[None]))
        proba = pm.predict_proba(emb[None], pg)[0]
        personalised, weight = pm.weight > 0, pm.weight
    else:
        proba = bundle.predict_proba_features(emb[None])[0]
    pred = bundle.prediction_from_proba(proba)
    c = CheckIn(user, ts, pred.label, pred.valence, pred.arousal, round(float(np.max(proba)), 6),
                personalised, round(weight, 4), pred.probabilities, source)
    if save:
        c = store.add_checkin(c)
    advice = recommend(store.checkins(user), today=ts.date())
    return c, advice


def history(store: WellbeingStore, user: str, *, days: int = 30, period: str = "day",
            now: dt.datetime | None = None) -> tuple[list[CheckIn], list[Period], Advice]:
    """The user's check-ins of the last ``days`` days, their aggregates and the advice (as ``vocalis history``)."""
    check_user(user)
    if days < 1:
        raise ConfigError(f"days={days} must be >= 1")
    now = now or dt.datetime.now(dt.timezone.utc)
    cs = store.checkins(user, since=now - dt.timedelta(days=days))
    return cs, aggregate(cs, period), recommend(cs, today=now.date())
