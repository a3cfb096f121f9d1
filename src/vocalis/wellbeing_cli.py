"""Wellbeing commands: ``enroll``, ``mood``, ``history``, ``reset`` (a Typer sub-app).

Mount them at the top level of the main CLI with :func:`register` (``vocalis enroll ...``), or
as a group with ``app.add_typer(wellbeing_cli.app, name="wellbeing")``.

Data live in a local SQLite file (``--db``, default ``$VOCALIS_DATA_DIR/wellbeing.db`` or
``~/.local/share/vocalis/wellbeing.db``); personal models next to it under ``models/``.
``--retention-days N`` (or ``$VOCALIS_WELLBEING_RETENTION_DAYS``) makes ``mood`` and ``history``
delete check-ins older than N days from that file first; ``reset --delete`` erases a user.
Each command turns a :class:`~vocalis.errors.VocalisError` into ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer

from vocalis.audio.constants import DEFAULT_MAX_DURATION_S, SAMPLE_RATE
from vocalis.cli_options import positive_seconds, writable_file
from vocalis.errors import ConfigError, DataError, VocalisError

app = typer.Typer(
    help="Wellbeing tracker: personal enrolment, mood check-ins, history and trends. Not a medical device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

UserOpt = Annotated[str, typer.Option("--user", "-u", help="User id (letters, digits, '_', '.', '-').")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="SQLite file (default: $VOCALIS_DATA_DIR/wellbeing.db "
                                                         "or ~/.local/share/vocalis/wellbeing.db).")]
ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Model bundle (default: the bundled model).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
TzOpt = Annotated[str | None, typer.Option(
    "--tz", help="IANA time zone for calendar days and weeks, e.g. Europe/Berlin (default: this computer's).")]
AllowNoSpeechOpt = Annotated[bool, typer.Option(
    "--allow-no-speech", envvar="VOCALIS_WELLBEING_ALLOW_NO_SPEECH",
    help="Accept clips in which voice activity hears no speech (by default they are refused: their mood would be a guess).")]
RetentionOpt = Annotated[int | None, typer.Option(
    "--retention-days", min=1, envvar="VOCALIS_WELLBEING_RETENTION_DAYS",
    help="First delete every check-in older than this many days from the database (default: keep all).")]


def _clean_errors(fn: F) -> F:
    """Print a VocalisError as ``error: ...`` and exit 2 (the main CLI's convention)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VocalisError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e

    return wrapper  # type: ignore[return-value]


def _dump(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


def _vector_bundle(model: Path | None) -> Any:
    from vocalis.bundle import load_bundle
    from vocalis.wellbeing.service import check_vector_bundle

    return check_vector_bundle(load_bundle(model))


def _embed(bundle: Any, path: Path, max_duration: float | None, allow_no_speech: bool = False) -> np.ndarray:
    from vocalis.audio.io import check_audible, load_audio
    from vocalis.audio.vad import check_speech

    x = check_audible(load_audio(path, SAMPLE_RATE, max_duration=max_duration), str(path))
    if not allow_no_speech:  # a mood of noise, music or silence would be a guess, and stay in the history
        check_speech(x, str(path), hint=" Record yourself talking (or pass --allow-no-speech); nothing was stored.")
    return np.asarray(bundle.features(x, SAMPLE_RATE), dtype=np.float32)


def _tz(name: str | None) -> dt.tzinfo:
    from vocalis.wellbeing.insight import local_tz, parse_tz

    return local_tz() if name is None else parse_tz(name)


def _purge(store: Any, retention_days: int | None) -> int:
    from vocalis.wellbeing.retention import purge_checkins

    return purge_checkins(store, retention_days) if retention_days is not None else 0


def _parse_at(at: str | None, tz: dt.tzinfo) -> dt.datetime:
    """``--at`` as an aware time; without an offset it is a wall-clock time in ``tz``."""
    if at is None:
        return dt.datetime.now(dt.timezone.utc)
    try:
        t = dt.datetime.fromisoformat(at)
    except ValueError as e:
        raise ConfigError(f"at={at!r} must be an ISO date/time such as 2025-01-31T08:00") from e
    return t if t.tzinfo else t.replace(tzinfo=tz)


@app.command()
@_clean_errors
def enroll(
    files: Annotated[list[Path], typer.Argument(help="Clips of the user in this mood.")],
    user: UserOpt,
    label: Annotated[str, typer.Option("--label", "-l", help="The mood of these clips (one of the model's labels).")],
    db: DbOpt = None,
    model: ModelOpt = None,
    json_out: JsonOpt = False,
    max_duration: Annotated[float, typer.Option(help="Reject clips longer than this (seconds).",
                                                callback=positive_seconds)] = DEFAULT_MAX_DURATION_S,
    allow_no_speech: AllowNoSpeechOpt = False,
) -> None:
    """Enrol labelled clips of a user and refit their personal model (speaker normalisation + small head)."""
    from vocalis.wellbeing import service as wb
    from vocalis.wellbeing.store import WellbeingStore, check_user

    check_user(user)
    bundle = _vector_bundle(model)
    wb.check_label(bundle, label)
    embeddings = [_embed(bundle, f, max_duration, allow_no_speech) for f in files]  # all checked before any is stored
    with WellbeingStore(db) as store:
        result = wb.enrol(store, bundle, user, label, embeddings, [str(f) for f in files])
        base = store.model_path(user)
    lab, counts = result.label, result.counts
    out = {"user": user, "label": lab, "added": len(files), "counts": counts, "weight": round(result.weight, 4),
           "model": str(base) + ".npz"}
    if json_out:
        _dump(out)
    else:
        per = ", ".join(f"{k} {v}" for k, v in counts.items())
        typer.echo(f"enrolled {len(files)} clip(s) as {lab} for {user}; samples: {per}; "
                   f"personal weight {result.weight:.2f}")
        if len(counts) < 2:
            typer.echo("note: enrol at least two moods before the personal head is used")


@app.command()
@_clean_errors
def mood(
    file: Annotated[Path, typer.Argument(help="A check-in clip (wav, flac, ogg/opus, mp3, webm, ...).")],
    user: UserOpt,
    db: DbOpt = None,
    model: ModelOpt = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="Time of the check-in (ISO; default now; without an offset: in --tz).")] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not store this check-in.")] = False,
    tz: TzOpt = None,
    retention_days: RetentionOpt = None,
    json_out: JsonOpt = False,
    max_duration: Annotated[float, typer.Option(help="Reject clips longer than this (seconds).",
                                                callback=positive_seconds)] = DEFAULT_MAX_DURATION_S,
    allow_no_speech: AllowNoSpeechOpt = False,
) -> None:
    """Check in: valence, arousal and mood with calibrated confidence (personalised once enrolled)."""
    from vocalis.wellbeing import service as wb
    from vocalis.wellbeing.store import WellbeingStore, check_user

    check_user(user)
    zone = _tz(tz)
    ts = _parse_at(at, zone)
    bundle = _vector_bundle(model)
    emb = _embed(bundle, file, max_duration, allow_no_speech)
    with WellbeingStore(db) as store:
        _purge(store, retention_days)
        c, advice = wb.check_in(store, bundle, user, emb, ts=ts, source=str(file), save=not no_save, tz=zone)
    personalised, weight = c.personalised, c.weight
    if json_out:
        _dump({**c.to_dict(), "advice": advice.to_dict()})
        return
    top = sorted(c.probabilities.items(), key=lambda kv: -kv[1])[:3]
    alts = ", ".join(f"{k} {v:.2f}" for k, v in top)
    tag = f"personalised, w={weight:.2f}" if personalised else "global model"
    typer.echo(f"{file}: {c.label} (confidence {c.confidence:.2f}; {alts})  valence {c.valence:+.2f} "
               f"arousal {c.arousal:+.2f}  [{tag}]")
    if advice.triggered:
        typer.echo(f"\n{advice.reason}. Some things that may help:")
        for t in advice.tips:
            typer.echo(f"  - {t.text} ({t.source})")
        typer.echo(f"\n{advice.disclaimer}")
    else:
        typer.echo("(Vocalis is not a medical device; 'history' shows your trend and where to find help.)")


@app.command()
@_clean_errors
def history(
    user: UserOpt,
    db: DbOpt = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Only the last N days.")] = 30,
    period: Annotated[str, typer.Option("--period", help="Aggregate by 'day' or 'week'.")] = "day",
    tz: TzOpt = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a trend PNG here.", callback=writable_file)] = None,
    retention_days: RetentionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A user's check-ins aggregated by day or week, an optional trend plot, and tips after sustained low mood."""
    from vocalis.wellbeing import service as wb
    from vocalis.wellbeing.insight import plot_trend, tz_name
    from vocalis.wellbeing.store import WellbeingStore, check_user

    check_user(user)
    zone = _tz(tz)
    with WellbeingStore(db) as store:
        purged = _purge(store, retention_days)
        cs, rows, advice = wb.history(store, user, days=days, period=period, tz=zone)
    if plot is not None:
        plot_trend(cs, plot, tz=zone, title=f"Mood trend of {user} (last {days} days, {tz_name(zone)})")
    if json_out:
        _dump({"user": user, "period": period, "tz": tz_name(zone), "n": len(cs), "rows": [r.to_dict() for r in rows],
               "plot": str(plot) if plot else None, "purged": purged, "advice": advice.to_dict()})
        return
    if purged:
        typer.echo(f"deleted {purged} check-in(s) older than {retention_days} days")
    if not rows:
        typer.echo(f"no check-ins for {user} in the last {days} days")
    else:
        typer.echo(f"{'week of' if period == 'week' else 'day'} ({tz_name(zone)})")
    for r in rows:
        typer.echo(f"{r.start.isoformat()}  n={r.n:<3} valence {r.valence:+.2f}  arousal {r.arousal:+.2f}  "
                   f"mostly {r.top_label}")
    if plot is not None:
        typer.echo(f"plot: {plot}")
    if advice.triggered:
        typer.echo(f"\n{advice.reason}. Some things that may help:")
        for t in advice.tips:
            typer.echo(f"  - {t.text} ({t.source})")
    typer.echo(f"\n{advice.disclaimer}")


@app.command()
@_clean_errors
def reset(
    user: UserOpt,
    db: DbOpt = None,
    delete: Annotated[bool, typer.Option("--delete", help="Also delete all check-ins and the user.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Forget a user's enrolled clips and personal model (``--delete``: everything about the user)."""
    from vocalis.wellbeing.retention import delete_user_data
    from vocalis.wellbeing.store import WellbeingStore, check_user

    check_user(user)
    with WellbeingStore(db) as store:
        known = store.users()
        if user not in known and store.get_model_path(user) is None and not store.model_path(user).exists():
            # a mistyped name must not look like a successful erasure
            hint = f"users in it: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}" if known else "it has no users"
            raise DataError(f"user={user!r} has no wellbeing data in {store.path} ({hint}); nothing was reset")
        out: dict[str, Any] = ({**delete_user_data(store, user).to_dict(), "deleted": True} if delete else
                               {"user": user, "enrolments": store.reset_personalisation(user), "deleted": False})
    if json_out:
        _dump(out)
    elif delete:
        typer.echo(f"deleted {user}: {out['enrolments']} enrolled clip(s), {out['checkins']} check-in(s)")
    else:
        typer.echo(f"reset {user}: removed {out['enrolments']} enrolled clip(s) and the personal model")


def register(parent: typer.Typer) -> None:
    """Add ``enroll``, ``mood``, ``history`` and ``reset`` as top-level commands of ``parent``."""
    parent.registered_commands.extend(app.registered_commands)
