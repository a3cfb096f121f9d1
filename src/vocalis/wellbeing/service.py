"""Library-level wellbeing operations shared by front ends (the web service; the CLI could use them too).

Each function takes an open :class:`~vocalis.wellbeing.store.WellbeingStore`, a loaded vector-feature
bundle and a validated user id, and mirrors the logic of ``vocalis enroll`` / ``mood`` / ``history``
in :mod:`vocalis.wellbeing_cli`. No audio decoding happens here: callers pass embeddings
(``bundle.features(audio, SAMPLE_RATE)``), so each front end keeps its own I/O and limits.

A personal model belongs to the global model it was fitted with (:func:`bundle_fingerprint`).
When the global model changes, :func:`personal_model` refits it from the stored enrolled
embeddings if the same feature extractor made them, and otherwise raises
:class:`~vocalis.wellbeing.personal.StaleModelError` naming both models: the two are never mixed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vocalis.errors import ConfigError, DataError, ModelError
from vocalis.wellbeing.insight import Advice, Period, aggregate, recommend
from vocalis.wellbeing.personal import PersonalModel, StaleModelError, bundle_fingerprint, bundle_reference
from vocalis.wellbeing.store import USER_RE, CheckIn, WellbeingStore, check_user

log = logging.getLogger("vocalis.wellbeing")

REENROL = ("re-enrol: reset personalisation (`vocalis reset --user {user}`, or DELETE /v1/wellbeing in the "
           "service) and enrol again")


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
    _, features_sha = bundle_fingerprint(bundle)
    X0, _ = store.enrolments(user)
    if X0.shape[0]:
        _check_reusable(store, bundle, user, X0.shape[1], what="cannot enrol more clips with the current model")
    dim = np.asarray(embeddings[0]).size
    if X0.shape[0] and X0.shape[1] != dim:
        raise DataError(f"user={user!r} enrolled with a different model ({X0.shape[1]}-d embeddings); "
                        "reset personalisation first")
    for e, s in zip(embeddings, srcs):
        store.add_enrolment(user, lab, e, source=s, features_sha256=features_sha)
    pm = fit_personal_model(store, bundle, user)
    return Enrolment(lab, len(embeddings), store.enrolment_counts(user), pm.weight)


def fit_personal_model(store: WellbeingStore, bundle: Any, user: str) -> PersonalModel:
    """(Re)fit ``user``'s personal model for ``bundle`` from their stored enrolled embeddings, save it.

    The blend is calibrated on held-out enrolled clips (:class:`PersonalModel`, step 4) and the
    model records ``bundle``'s fingerprints. The caller checks the embeddings suit ``bundle``.
    """
    X, y = store.enrolments(user)
    if not y:
        raise DataError(f"user={user!r} has no enrolled clips to fit a personal model on")
    global_sha, features_sha = bundle_fingerprint(bundle)
    ref = bundle_reference(bundle._onnx)
    pm = PersonalModel(bundle.labels).fit(X, y, reference_mean=ref[0] if ref else None,
                                          reference_scale=ref[1] if ref else None,
                                          global_proba=bundle.predict_proba_features,
                                          global_sha256=global_sha, features_sha256=features_sha)
    before = store.get_model_path(user)
    base = store.model_path(user)
    pm.save(base)
    store.set_model(user, base, pm.n_)
    if before is not None and before != base:  # saved under an older file layout: leave no copy behind
        store.remove_model_files(user, before, current=False)
    return pm


def _check_reusable(store: WellbeingStore, bundle: Any, user: str, dim: int, *, what: str,
                    fitted_on: str | None = None) -> None:
    """:class:`StaleModelError` unless every enrolled embedding of ``user`` was made by ``bundle``'s extractor."""
    global_sha, features_sha = bundle_fingerprint(bundle)
    made_by = store.enrolment_features(user)
    if made_by == {features_sha}:
        return
    if not made_by:
        why = "no enrolled clips are stored to refit it from"
    elif None in made_by:
        why = "its enrolled clips were embedded before Vocalis recorded the feature extractor"
    else:
        others = sorted(h[:12] for h in made_by if h and h != features_sha)
        why = (f"its enrolled clips were embedded by another feature extractor (sha256 {', '.join(others)}; "
               f"the current model's is {features_sha[:12]}, {dim}-d embeddings stored)")
    head = (f"user={user!r}: personal model was fitted on model sha256 {fitted_on[:12] or 'unknown'}, "
            f"current model is {global_sha[:12]}" if fitted_on is not None else
            f"user={user!r}: current model is {global_sha[:12]}")
    raise StaleModelError(f"{head}; {why}, so it {what}; {REENROL.format(user=user)}, "
                          "or use the model it was fitted with")


def personal_model(store: WellbeingStore, bundle: Any, user: str) -> PersonalModel | None:
    """The user's personal model for ``bundle`` (``None`` if not enrolled).

    A model fitted with another global model (its ``global_sha256_`` differs from ``bundle``'s) is
    refitted and saved when the stored embeddings come from ``bundle``'s feature extractor, else
    :class:`StaleModelError` says which model it was fitted on and how to re-enrol.
    """
    mpath = store.get_model_path(user)
    if mpath is None:
        return None
    pm = PersonalModel.load(mpath)
    global_sha, _ = bundle_fingerprint(bundle)
    if pm.global_sha256_ == global_sha:
        if pm.labels != bundle.labels:  # cannot happen with matching fingerprints; kept as a guard
            raise ModelError(f"user={user!r}'s personal model has labels {pm.labels}, the model {bundle.labels}; "
                             "reset personalisation and enrol again")
        return pm
    _check_reusable(store, bundle, user, int(pm.mean_.shape[0]), what="cannot be refitted",
                    fitted_on=pm.global_sha256_)
    log.info("user=%r: personal model fitted on model sha256 %s; refitting for the current model %s",
             user, pm.global_sha256_[:12] or "unknown", global_sha[:12])
    return fit_personal_model(store, bundle, user)


def check_in(store: WellbeingStore, bundle: Any, user: str, embedding: np.ndarray, *,
             ts: dt.datetime | None = None, source: str = "", save: bool = True,
             tz: dt.tzinfo | None = None) -> tuple[CheckIn, Advice]:
    """Predict a check-in (personalised once enrolled), store it and return it with the advice (as ``vocalis mood``).

    ``confidence`` is the top calibrated probability (global temperature, or the personal blend's).
    ``tz``: the user's time zone for the advice's days (default UTC).
    """
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
    today = (ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)).astimezone(tz or dt.timezone.utc).date()
    advice = recommend(store.checkins(user), today=today, tz=tz)
    return c, advice


def history(store: WellbeingStore, user: str, *, days: int = 30, period: str = "day",
            now: dt.datetime | None = None, tz: dt.tzinfo | None = None) -> tuple[list[CheckIn], list[Period], Advice]:
    """The user's check-ins of the last ``days`` days, their aggregates and the advice (as ``vocalis history``).

    ``tz``: the time zone whose calendar days and ISO weeks group the check-ins (default UTC).
    """
    check_user(user)
    if days < 1:
        raise ConfigError(f"days={days} must be >= 1")
    tz = tz or dt.timezone.utc
    now = now or dt.datetime.now(dt.timezone.utc)
    cs = store.checkins(user, since=now - dt.timedelta(days=days))
    return cs, aggregate(cs, period, tz), recommend(cs, today=now.astimezone(tz).date(), tz=tz)
