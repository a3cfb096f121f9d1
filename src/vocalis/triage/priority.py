"""Priority of a call from gravity, caller affect and non-genuine signals — with its reasons.

Pure functions over what :mod:`vocalis.triage.call` measured, so the scoring is deterministic and
testable on synthetic inputs::

    base     = 1 - (1 - w_gravity * G) * (1 - w_affect * A)        (a noisy-OR of the two)
    priority = 100 * base * (1 - min(max_discount, sum of signal penalties))

``G`` is the noisy-OR of the grave terms heard (:func:`vocalis.triage.lexicon.gravity_score`),
``A`` the caller's peak sustained distress: the mean of the ``peak_windows`` highest
per-window distress intensities, rescaled so that ``affect_floor`` (what calm speech scores) maps
to 0. With the default weights the gravest words alone reach P1 (75: "he is not breathing" said
calmly is still a cardiac arrest), a screaming caller with no intelligible word reaches P2 (45),
and both together about 86. Signals of a prank or pocket call *discount* the priority (at most
``max_discount``): they are evidence for the dispatcher, never a verdict that drops a call.
Levels: P1 >= 70, P2 >= 45, P3 >= 20, else P4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vocalis.errors import ConfigError
from vocalis.triage.lexicon import GravityHit, gravity_score

LEVELS: tuple[tuple[str, float], ...] = (("P1", 70.0), ("P2", 45.0), ("P3", 20.0), ("P4", 0.0))


@dataclass(frozen=True)
class PriorityConfig:
    w_gravity: float = 0.75
    w_affect: float = 0.45
    affect_floor: float = 0.25
    peak_windows: int = 2
    sustain_threshold: float = 0.5
    max_discount: float = 0.5

    def __post_init__(self) -> None:
        for name in ("w_gravity", "w_affect", "max_discount"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name}={v} must be in [0, 1]")
        if not 0.0 <= self.affect_floor < 1.0:
            raise ConfigError(f"affect_floor={self.affect_floor} must be in [0, 1)")
        if self.peak_windows < 1:
            raise ConfigError(f"peak_windows={self.peak_windows} must be >= 1")


@dataclass(frozen=True)
class Signal:
    """Evidence that a call may not be genuine (or not a call at all), with a priority discount."""

    name: str
    evidence: str
    penalty: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reason:
    text: str
    contribution: float
    kind: str  # "keyword", "affect", "signal", "negated"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WindowAffect:
    """Distress of one timeline window (``None`` when the window held too little speech)."""

    start: float
    end: float
    distress: float | None
    top: str | None = None  # the strongest urgent label in the window, e.g. "fear"
    top_p: float = 0.0


def clock(t: float | None) -> str:
    """Seconds as ``mm:ss``.

    >>> clock(72.4), clock(None)
    ('01:12', '--:--')
    """
    if t is None:
        return "--:--"
    s = round(t)
    return f"{s // 60:02d}:{s % 60:02d}"


def affect_score(windows: Sequence[WindowAffect], config: PriorityConfig = PriorityConfig()) -> float:
    """Peak sustained distress in [0, 1] (0 without speech)."""
    d = sorted((w.distress for w in windows if w.distress is not None), reverse=True)
    if not d:
        return 0.0
    peak = sum(d[: config.peak_windows]) / min(len(d), config.peak_windows)
    return max(0.0, min(1.0, (peak - config.affect_floor) / (1.0 - config.affect_floor)))


def sustained_run(windows: Sequence[WindowAffect], threshold: float) -> tuple[float, float, float, str] | None:
    """Longest run of consecutive windows with distress >= threshold: (start, end, mean, dominant label)."""
    best: tuple[float, float, float, str] | None = None
    run: list[WindowAffect] = []
    for w in [*windows, None]:
        if w is not None and w.distress is not None and w.distress >= threshold:
            run.append(w)
            continue
        if run:
            start, end = run[0].start, run[-1].end
            if best is None or end - start > best[1] - best[0]:
                labels = [r.top for r in run if r.top]
                top = max(set(labels), key=labels.count) if labels else "distress"
                mean = sum(r.top_p if r.top == top else 0.0 for r in run) / len(run) if labels else \
                    sum(r.distress or 0.0 for r in run) / len(run)
                best = (start, end, mean, top)
            run = []
    return best


def level(priority: float) -> str:
    """``P1``..``P4`` for a 0-100 priority."""
    for name, lo in LEVELS:
        if priority >= lo:
            return name
    return LEVELS[-1][0]


def score(hits: Sequence[GravityHit], windows: Sequence[WindowAffect], signals: Sequence[Signal],
          config: PriorityConfig = PriorityConfig()) -> tuple[float, list[Reason]]:
    """Priority in [0, 100] and its reasons (largest contribution first)."""
    g = gravity_score(hits)
    a = affect_score(windows, config)
    base = 1.0 - (1.0 - config.w_gravity * g) * (1.0 - config.w_affect * a)
    discount = min(config.max_discount, sum(s.penalty for s in signals))
    priority = round(100.0 * base * (1.0 - discount), 1)

    reasons: list[Reason] = []
    seen: set[str] = set()
    for h in hits:
        if h.negated:
            reasons.append(Reason(f"negated: '{h.context}' at {clock(h.start)} (not counted)", 0.0, "negated"))
        elif h.phrase not in seen:
            seen.add(h.phrase)
            n = sum(1 for x in hits if x.phrase == h.phrase and not x.negated)
            times = f" ({n}x)" if n > 1 else ""
            reasons.append(Reason(f"keyword '{h.phrase}' at {clock(h.start)}{times} [{h.category}]",
                                  round(100 * config.w_gravity * h.weight, 1), "keyword"))
    run = sustained_run(windows, config.sustain_threshold)
    if run is not None:
        start, end, mean, top = run
        reasons.append(Reason(f"{top} {mean:.2f} for {end - start:.0f} s ({clock(start)}-{clock(end)})",
                              round(100 * config.w_affect * a, 1), "affect"))
    elif a > 0:
        reasons.append(Reason(f"distress peak {a:.2f} (not sustained)", round(100 * config.w_affect * a, 1), "affect"))
    for s in signals:
        reasons.append(Reason(f"signal: {s.name.replace('_', ' ')} ({s.evidence})",
                              round(-100 * base * s.penalty, 1), "signal"))
    reasons.sort(key=lambda r: -abs(r.contribution))
    return priority, reasons
