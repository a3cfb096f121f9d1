"""Check-in history: daily/weekly aggregation, trend plots and self-help recommendations.

No I/O except :func:`plot_trend` (writes one PNG with matplotlib's Agg backend) and
:func:`local_tz` (reads the system's zone).

Days and ISO weeks are calendar periods of a time zone: :func:`parse_tz` turns an IANA name
(``Europe/Berlin``) into one, :func:`local_tz` is this computer's. Check-ins are stored in UTC.

Recommendation rule (deliberately simple and explainable): among the user's last
``window`` days *with* check-ins (default 5, looking back at most ``lookback_days``), if the
daily mean valence is below ``threshold`` (default -0.2) on at least ``min_days`` of them
(default 3), Vocalis shows a few tips from a small curated library, chosen by the arousal
of those days (low arousal: low mood; high arousal: stress/anxiety/anger), always with
:data:`DISCLAIMER`.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.errors import ConfigError, require
from vocalis.wellbeing.store import CheckIn

DISCLAIMER = (
    "Vocalis is not a medical device. It estimates mood from the sound of your voice, can be wrong, "
    "and cannot diagnose or treat any condition. If you feel unable to keep yourself safe, or are "
    "thinking about harming yourself, call your local emergency number now (999 in the UK, 112 in "
    "the EU, 911 in the US) or go to an emergency department. For urgent support: in the UK call NHS "
    "111 or Samaritans on 116 123 (free, 24 hours); elsewhere contact your doctor or a local crisis "
    "line. If low mood lasts more than two weeks, talk to your GP or a health professional."
)


def parse_tz(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``America/New_York``, ``UTC``), else :class:`ConfigError`.

    >>> parse_tz("Europe/Berlin").key
    'Europe/Berlin'
    >>> parse_tz("Mars/Olympus")
    Traceback (most recent call last):
    ...
    vocalis.errors.ConfigError: tz='Mars/Olympus' must be an IANA time zone name such as 'Europe/Berlin' or 'UTC'
    """
    rule = "must be an IANA time zone name such as 'Europe/Berlin' or 'UTC'"
    if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > 64:
        raise ConfigError(f"tz={name!r} {rule}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, UnicodeError) as e:
        raise ConfigError(f"tz={name!r} {rule}") from e


def local_tz() -> dt.tzinfo:
    """This computer's time zone: ``$TZ`` when it names an IANA zone, else ``/etc/localtime``
    (with its daylight-saving rules), else the current UTC offset."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return parse_tz(name)
        except ConfigError:
            pass
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:  # usually a link into the zone database: keep the IANA name
        try:
            return parse_tz(target.split("/zoneinfo/", 1)[1])
        except ConfigError:
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return dt.datetime.now().astimezone().tzinfo or dt.timezone.utc


def tz_name(tz: dt.tzinfo | None) -> str:
    """A printable name of ``tz`` (its IANA key when it has one; ``UTC`` for ``None``)."""
    if tz is None:
        return "UTC"
    key = getattr(tz, "key", None)
    return str(key) if key else str(dt.datetime.now(tz).tzname() or tz)


@dataclass(frozen=True)
class Tip:
    """One self-help tip with its evidence source (named, no link)."""

    key: str
    text: str
    source: str
    kind: str  # "low" (low mood, low arousal), "high" (stress/anxiety/anger), "any"

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "text": self.text, "source": self.source}


TIPS: tuple[Tip, ...] = (
    Tip("connect", "Reach out to someone you trust today: a call, a message or a short walk together.",
        "NHS, '5 steps to mental wellbeing' (connect with other people)", "any"),
    Tip("move", "Be physically active: even a 10-minute brisk walk can lift mood.",
        "NHS, '5 steps to mental wellbeing' (be physically active); WHO guidelines on physical activity (2020)",
        "low"),
    Tip("activate", "Plan one small, enjoyable or meaningful activity for today and do it, even if you "
        "do not feel like it first (behavioural activation).",
        "NHS Every Mind Matters, 'Low mood'; NICE guideline NG222 (behavioural activation)", "low"),
    Tip("sleep", "Keep regular sleep and wake times, and avoid screens and caffeine late in the day.",
        "NHS Every Mind Matters, 'Sleep'", "any"),
    Tip("breathe", "Try slow breathing: in through the nose for 4 seconds, out for 6, for a few minutes.",
        "NHS, 'Breathing exercises for stress'", "high"),
    Tip("ground", "When feelings are strong, ground yourself: notice 5 things you see, 4 you hear, 3 you can "
        "touch; then unhook from difficult thoughts and refocus on what you are doing.",
        "WHO, 'Doing What Matters in Times of Stress' (2020)", "high"),
    Tip("worry", "Set aside 15 minutes a day as 'worry time'; write worries down and return to them then.",
        "NHS Every Mind Matters, 'Anxiety'", "high"),
    Tip("mindful", "Pay attention to the present moment: your body, your surroundings, your breath.",
        "NHS, '5 steps to mental wellbeing' (pay attention to the present moment)", "any"),
    Tip("alcohol", "Avoid using alcohol or drugs to cope; they tend to worsen mood over time.",
        "NHS, 'Alcohol and mental health'; WHO, 'Doing What Matters in Times of Stress' (2020)", "any"),
)


@dataclass(frozen=True)
class Period:
    """Aggregate of the check-ins of one day or ISO week."""

    start: dt.date
    n: int
    valence: float
    arousal: float
    confidence: float
    top_label: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "n": self.n, "valence": round(self.valence, 4),
                "arousal": round(self.arousal, 4), "confidence": round(self.confidence, 4),
                "top_label": self.top_label}


def _day(c: CheckIn, tz: dt.tzinfo | None) -> dt.date:
    t = c.ts if c.ts.tzinfo else c.ts.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(tz).date() if tz is not None else t.date()


def aggregate(checkins: Sequence[CheckIn], period: str = "day", tz: dt.tzinfo | None = None) -> list[Period]:
    """Mean valence/arousal/confidence per calendar day or ISO week (Monday start), oldest first.

    ``tz`` is the user's time zone for day boundaries (default: the time stamps' own, UTC as stored).
    """
    if period not in ("day", "week"):
        raise ConfigError(f"period={period!r} must be 'day' or 'week'")
    groups: dict[dt.date, list[CheckIn]] = {}
    for c in checkins:
        d = _day(c, tz)
        if period == "week":
            d = d - dt.timedelta(days=d.weekday())
        groups.setdefault(d, []).append(c)
    out = []
    for start in sorted(groups):
        cs = groups[start]
        n = len(cs)
        top = Counter(c.label for c in cs).most_common(1)[0][0]
        out.append(Period(start, n, sum(c.valence for c in cs) / n, sum(c.arousal for c in cs) / n,
                          sum(c.confidence for c in cs) / n, top))
    return out


@dataclass(frozen=True)
class Advice:
    """The outcome of the recommendation rule."""

    triggered: bool
    reason: str
    tips: tuple[Tip, ...]
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        return {"triggered": self.triggered, "reason": self.reason, "tips": [t.to_dict() for t in self.tips],
                "disclaimer": self.disclaimer}


def recommend(
    checkins: Sequence[CheckIn],
    *,
    today: dt.date | None = None,
    window: int = 5,
    min_days: int = 3,
    threshold: float = -0.2,
    lookback_days: int = 14,
    max_tips: int = 4,
    tz: dt.tzinfo | None = None,
) -> Advice:
    """Tips when mood was negative on at least ``min_days`` of the last ``window`` days with check-ins.

    Only days within ``lookback_days`` of ``today`` count (old history never triggers advice).
    The disclaimer is always attached, triggered or not.
    """
    if not 1 <= min_days <= window:
        raise ConfigError(f"min_days={min_days} must be between 1 and window={window}")
    today = today or dt.datetime.now(dt.timezone.utc).date()
    days = [p for p in aggregate(checkins, "day", tz) if 0 <= (today - p.start).days < lookback_days]
    recent = days[-window:]
    negative = [p for p in recent if p.valence < threshold]
    if len(negative) < min_days:
        return Advice(False, f"negative mood on {len(negative)} of the last {len(recent)} days with check-ins "
                             f"(tips appear at {min_days} of {window})", ())
    arousal = sum(p.arousal for p in negative) / len(negative)
    kind = "high" if arousal > 0.2 else "low"
    chosen = [t for t in TIPS if t.kind == kind] + [t for t in TIPS if t.kind == "any"]
    reason = (f"negative mood (valence < {threshold:+.1f}) on {len(negative)} of the last {len(recent)} days "
              f"with check-ins; mostly {'tense/agitated' if kind == 'high' else 'low-energy'}")
    return Advice(True, reason, tuple(chosen[:max_tips]))


def plot_trend(checkins: Sequence[CheckIn], path: str | Path, *, tz: dt.tzinfo | None = None,
               title: str = "Mood trend") -> Path:
    """Write a PNG: daily mean valence and arousal (lines, markers) and weekly means (steps)."""
    require("matplotlib", "train")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    daily = aggregate(checkins, "day", tz)
    weekly = aggregate(checkins, "week", tz)
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    try:
        if daily:
            x = np.array([p.start for p in daily], dtype="datetime64[D]")
            ax.plot(x, [p.valence for p in daily], "o-", color="tab:blue", label="valence (daily)")
            ax.plot(x, [p.arousal for p in daily], "s-", color="tab:orange", alpha=0.8, label="arousal (daily)")
            wx = np.array([p.start for p in weekly] + [weekly[-1].start + dt.timedelta(days=7)], dtype="datetime64[D]")
            ax.step(wx, [p.valence for p in weekly] + [weekly[-1].valence], where="post", color="tab:blue",
                    alpha=0.35, linewidth=3, label="valence (weekly)")
            ax.legend(loc="lower left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no check-ins yet", ha="center", va="center", transform=ax.transAxes)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("-1 negative / low  ..  +1 positive / high")
        ax.set_title(title)
        fig.autofmt_xdate()
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out
