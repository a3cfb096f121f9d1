"""DangerPolicy: a pure state machine from window scores to danger events. It never sends anything.

Risk of a window (noisy-OR of four cues, each weighted into [0, 1])::

    risk = 1 - (1 - w_scream * scream) * (1 - w_backbone * backbone)
             * (1 - w_distress * distress) * (1 - w_keyword * heard)

``distress`` is the summed emotion probability of :attr:`PolicyConfig.distress_labels`
(default ``fear``); ``heard`` is 1 when the window has a keyword hit. With the defaults a
scream alone can raise the alarm (``on_threshold`` 0.35 is the shipped scream detector's operating
point, ``metrics.operating_point`` of its deciding stage, chosen on the training side), while a calm "help"
(0.15) cannot; a call for help *and* a scream-like voice (P(scream) >= 0.24) can.

``backbone`` is an optional second scream head's P(scream) on the emotion model's embedding
(``WindowResult.scream_backbone``: computed with every emotion run and held over the windows that
overlap it; 0 when absent). Its weight ``w_backbone`` is ``on_threshold`` / that head's operating
point (``metrics.operating_point`` of its bundle, chosen by
:func:`vocalis.danger.train.cross_validate_backbone`), so the head alone reaches ``on_threshold``
exactly at its own operating point; a held score lasts long enough for N-of-M and the minimum
duration. No such head ships and the default weight is 0: cross-validated through this policy on
the training side, every head tried lowered clip F1 (0.868 -> 0.81-0.84), calling unseen
sessions' quiet backgrounds a scream (``benchmarks/scream_fusion.py``).

Distress has no weight by default (``w_distress=0``; set it to fuse fear). The emotion model is
trained on acted studio speech; on phone audio, quiet rooms and noise its ``fear`` probability is
often high, and fused at 0.15 it let scream scores of 0.06 reach the threshold. Cross-validated on
the training side (``benchmarks/scream_validation.py``, the shipped recipe at 0.2) the weight 0.15
raised recall (0.859 -> 0.894) but flagged 14 instead of 5 of 35 quiet-background clips, made 72
instead of 7 near-miss episodes on 2.4 h of non-danger audio and 5 instead of 4 false alerts (clip
F1 0.847 vs 0.862); on the held-out test set ``w_distress=0`` moved clip F1 from 0.908 to 0.927
and false alerts from 0.80 to 0.40 per hour (``docs/benchmarks.md``).

Episode logic:

* **start** (``danger.started``): at least ``n_on`` of the last ``m_windows`` windows have
  ``risk >= on_threshold`` (N-of-M) *and* risk has stayed at or above ``off_threshold`` since a
  window at least ``min_duration_s`` earlier first reached ``on_threshold`` (minimum duration);
* **end** (``danger.ended``): ``risk < off_threshold`` for ``release_s`` seconds in a row
  (hysteresis: values between the two thresholds neither start nor end an episode);
* **countdown**: a started episode opens a confirmation countdown of ``countdown_s``; one
  ``countdown`` event at the start and one at every whole second left; :meth:`cancel` during it
  emits ``cancelled`` and no alert follows; when it runs out, ``alert``. The countdown keeps
  running if the sound stops (a silenced victim must still be helped); only cancel stops it;
  :meth:`confirm` raises its alert early (the stream ends and nobody could cancel any more);
* **cooldown**: for ``cooldown_s`` after an alert (or a cancel) new episodes are reported
  (``danger.started`` with ``cooldown=True``) but open no countdown and raise no alert;
* **re-arm**: an episode whose countdown was cancelled and that is still going when the cooldown
  ends (its current window counts among ``n_on`` hits) opens a new countdown (reason
  ``...,after-cancel``): a cancel silences a false alarm for ``cooldown_s``, not for as long as the
  sound lasts (a cancel may have been forced);
* **panic**: :meth:`panic` raises an ``alert`` at once (ignores countdown and cooldown).

:meth:`tick` advances the countdown without audio (a UI timer); :meth:`push` does it too.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from vocalis.errors import ConfigError

EVENT_TYPES = ("danger.started", "countdown", "alert", "cancelled", "danger.ended")


class WindowScores(Protocol):
    """What the policy reads from a window (``WindowResult`` provides it)."""

    @property
    def t_end(self) -> float: ...

    @property
    def scream(self) -> float: ...

    @property
    def probabilities(self) -> Mapping[str, float]: ...

    @property
    def keywords(self) -> list[str]: ...

    # optional: ``scream_backbone: float | None`` (read with getattr; absent = no backbone score)


def _backbone(w: Any) -> float:
    """The window's backbone scream score in [0, 1] (0 when it has none)."""
    b = getattr(w, "scream_backbone", None)
    return 0.0 if b is None else min(max(float(b), 0.0), 1.0)


W_BACKBONE = 0.0
"""Default :attr:`PolicyConfig.w_backbone`: no backbone head ships (see the module docstring)."""


@dataclass(frozen=True)
class PolicyConfig:
    """Thresholds and timings of :class:`DangerPolicy` (seconds of stream time)."""

    on_threshold: float = 0.35
    off_threshold: float = 0.1
    n_on: int = 2
    m_windows: int = 3
    min_duration_s: float = 0.5
    release_s: float = 1.5
    countdown_s: float = 10.0
    cooldown_s: float = 60.0
    w_scream: float = 1.0
    w_backbone: float = W_BACKBONE
    w_distress: float = 0.0
    w_keyword: float = 0.15
    distress_labels: tuple[str, ...] = ("fear",)

    def __post_init__(self) -> None:
        for name in ("on_threshold", "off_threshold", "w_scream", "w_backbone", "w_distress", "w_keyword"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0 or math.isnan(v):
                raise ConfigError(f"{name}={v!r} must be a number between 0 and 1")
        if not self.on_threshold > 0.0:
            raise ConfigError(f"on_threshold={self.on_threshold} must be > 0")
        if not self.off_threshold <= self.on_threshold:
            raise ConfigError(
                f"off_threshold={self.off_threshold} must be <= on_threshold={self.on_threshold} (hysteresis)"
            )
        if not isinstance(self.m_windows, int) or self.m_windows < 1:
            raise ConfigError(f"m_windows={self.m_windows!r} must be an integer >= 1")
        if not isinstance(self.n_on, int) or not 1 <= self.n_on <= self.m_windows:
            raise ConfigError(f"n_on={self.n_on!r} must be an integer between 1 and m_windows={self.m_windows}")
        for name in ("min_duration_s", "release_s", "countdown_s", "cooldown_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v < math.inf:
                raise ConfigError(f"{name}={v!r} must be a finite number of seconds >= 0")
        labels = self.distress_labels
        if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
            raise ConfigError(f"distress_labels={labels!r} must be a list of label names")
        object.__setattr__(self, "distress_labels", tuple(labels))

    def at_threshold(self, on_threshold: float) -> PolicyConfig:
        """This config at another ``on_threshold`` (a detector's operating point), with ``off_threshold``
        lowered to it where it would lie above (hysteresis needs off <= on)."""
        on = float(on_threshold)
        return replace(self, on_threshold=on, off_threshold=min(self.off_threshold, on))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"policy options {unknown} must be among {sorted(cls.__dataclass_fields__)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class Event:
    """One policy event. ``type`` is one of :data:`EVENT_TYPES`; ``t`` is stream time (s)."""

    type: str
    t: float
    risk: float | None = None
    reason: str = ""
    remaining: float | None = None
    cooldown: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {} and v != ""}


class DangerPolicy:
    """Feed :meth:`push` one window at a time (in stream order); act on the returned events."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.reset()

    def reset(self) -> None:
        """Back to idle: no episode, no countdown, no cooldown, empty history."""
        self._hist: deque[tuple[float, bool]] = deque(maxlen=self.config.m_windows)
        self.active = False  # inside a danger episode
        self._below_since: float | None = None
        self._onset: float | None = None  # first window >= on since risk was last below off
        self._deadline: float | None = None  # countdown end
        self._next_tick: float | None = None
        self._cooldown_until = -math.inf
        self._rearm = False  # a cancelled episode that is still going re-opens a countdown after the cooldown
        self._t = -math.inf
        self.last_risk = 0.0

    # -- scoring ----------------------------------------------------------------------------

    def distress(self, probabilities: Mapping[str, float]) -> float:
        return float(min(1.0, sum(float(probabilities.get(lab, 0.0)) for lab in self.config.distress_labels)))

    def risk(self, w: WindowScores) -> float:
        """Fused risk in [0, 1] of one window (see module docstring)."""
        c = self.config
        s = min(max(float(w.scream), 0.0), 1.0)
        b = _backbone(w)
        d = self.distress(w.probabilities)
        k = 1.0 if w.keywords else 0.0
        return float(1.0 - (1.0 - c.w_scream * s) * (1.0 - c.w_backbone * b)
                     * (1.0 - c.w_distress * d) * (1.0 - c.w_keyword * k))

    # -- state machine ----------------------------------------------------------------------

    @property
    def counting_down(self) -> bool:
        return self._deadline is not None

    @property
    def deadline(self) -> float | None:
        """Stream time at which the running countdown raises the alert (``None`` when none runs)."""
        return self._deadline

    @property
    def clock(self) -> float:
        """The latest stream time seen (``-inf`` before the first window)."""
        return self._t

    def _advance(self, t: float) -> None:
        if t < self._t:
            raise ConfigError(f"t={t} must not go back in time (last t={self._t}); call reset() for a new stream")
        self._t = t

    def push(self, w: WindowScores) -> list[Event]:
        """Score one window and return the events it causes (in time order)."""
        t = float(w.t_end)
        self._advance(t)
        c = self.config
        r = self.risk(w)
        self.last_risk = r
        events: list[Event] = []
        self._hist.append((t, r >= c.on_threshold))
        if r < c.off_threshold:
            self._onset = None
        elif r >= c.on_threshold and self._onset is None:
            self._onset = t
        if not self.active:
            above = [ts for ts, hit in self._hist if hit]
            if (len(above) >= c.n_on and self._onset is not None
                    and t - self._onset >= c.min_duration_s - 1e-9):
                self.active = True
                self._below_since = None
                in_cooldown = t < self._cooldown_until
                reasons = self._reasons(w)
                events.append(Event("danger.started", t, round(r, 4), reasons, cooldown=in_cooldown))
                if not in_cooldown and self._deadline is None:
                    events.append(self._open_countdown(t, r, reasons))
        else:
            if r < c.off_threshold:
                if self._below_since is None:
                    self._below_since = t
                if t - self._below_since >= c.release_s - 1e-9:
                    events.append(self._end_episode(t, r))
            else:
                self._below_since = None
                if (self._rearm and self._deadline is None and t >= self._cooldown_until
                        and sum(hit for _, hit in self._hist) >= c.n_on):
                    # cancelled, but the danger went on through the whole cooldown: ask again
                    self._rearm = False
                    events.append(self._open_countdown(t, r, self._reasons(w) + ",after-cancel"))
        events += self._countdown(t)
        return events

    def _end_episode(self, t: float, r: float, reason: str = "") -> Event:
        self.active = False
        self._rearm = False
        self._below_since = None
        self._hist.clear()
        return Event("danger.ended", t, round(r, 4), reason)

    def _open_countdown(self, t: float, r: float, reasons: str) -> Event:
        c = self.config
        self._deadline = t + c.countdown_s
        self._next_tick = t + c.countdown_s - math.floor(c.countdown_s - 1e-9) if c.countdown_s > 0 else t
        return Event("countdown", t, round(r, 4), reasons, remaining=round(c.countdown_s, 3))

    def _reasons(self, w: WindowScores) -> str:
        c = self.config
        parts = []
        if max(c.w_scream * w.scream, c.w_backbone * _backbone(w)) >= 0.5 * c.on_threshold:
            parts.append("scream")
        if c.w_distress > 0 and c.w_distress * self.distress(w.probabilities) >= 0.5 * c.w_distress:
            parts.append("distress")
        if w.keywords:
            parts.append("keyword:" + "+".join(w.keywords))
        return ",".join(parts) or "risk"

    def _countdown(self, t: float) -> list[Event]:
        events: list[Event] = []
        if self._deadline is None:
            return events
        assert self._next_tick is not None
        while self._next_tick < self._deadline and self._next_tick <= t + 1e-9:
            events.append(Event("countdown", round(self._next_tick, 6),
                                remaining=round(self._deadline - self._next_tick, 3)))
            self._next_tick += 1.0
        if t >= self._deadline - 1e-9:
            events.append(Event("alert", t, round(self.last_risk, 4), "countdown elapsed",
                                data={"deadline": round(self._deadline, 6)}))
            self._deadline = None
            self._next_tick = None
            self._cooldown_until = t + self.config.cooldown_s
        return events

    def tick(self, t: float) -> list[Event]:
        """Advance the clock to ``t`` without audio (countdown events and the alert when it expires)."""
        self._advance(float(t))
        return self._countdown(float(t))

    def finish(self, t: float) -> list[Event]:
        """The stream ended at ``t``: run a pending countdown out to its deadline (an alert is never
        lost because the audio stopped), then close an open episode with ``danger.ended``
        (reason ``"end of stream"``) so every ``danger.started`` has its end."""
        t = float(t)
        events: list[Event] = []
        if self._deadline is not None:
            t = max(t, self._deadline)
            events += self.tick(t)
        else:
            self._advance(t)
        if self.active:
            events.append(self._end_episode(t, self.last_risk, "end of stream"))
        return events

    def cancel(self, t: float) -> list[Event]:
        """The user cancels the pending alert: ``cancelled`` when a countdown was running, else nothing."""
        self._advance(float(t))
        events = self._countdown(float(t))  # an expired countdown has already alerted
        if self._deadline is None:
            return events
        self._deadline = None
        self._next_tick = None
        self._cooldown_until = float(t) + self.config.cooldown_s
        self._rearm = self.active  # the same episode may ask again once the cooldown is over
        return [*events, Event("cancelled", float(t), reason="user")]

    def confirm(self, t: float, reason: str) -> list[Event]:
        """Raise the running countdown's alert now, before its deadline (the stream ends and nobody
        can cancel it any more): ``alert`` (with ``reason``) when a countdown was running, else
        nothing; the cooldown starts as after any alert, so the episode opens no second countdown."""
        self._advance(float(t))
        events = self._countdown(float(t))  # an expired countdown has already alerted
        if self._deadline is None:
            return events
        deadline = self._deadline
        self._deadline = None
        self._next_tick = None
        self._cooldown_until = float(t) + self.config.cooldown_s
        return [*events, Event("alert", float(t), round(self.last_risk, 4), reason,
                               data={"deadline": round(deadline, 6)})]

    def panic(self, t: float, reason: str = "panic") -> list[Event]:
        """Manual panic trigger: an ``alert`` right now (no countdown, ignores cooldown)."""
        self._advance(float(t))
        self._deadline = None
        self._next_tick = None
        self._cooldown_until = float(t) + self.config.cooldown_s
        return [Event("alert", float(t), reason=reason)]
