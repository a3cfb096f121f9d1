"""DangerPolicy on synthetic score sequences: each test fails if its mechanism is removed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vocalis.danger.policy import EVENT_TYPES, DangerPolicy, Event, PolicyConfig
from vocalis.errors import ConfigError

HOP = 0.5


@dataclass
class W:
    t_end: float
    scream: float
    probabilities: dict[str, float] = field(default_factory=dict)
    keywords: list[str] = field(default_factory=list)
    scream_backbone: float | None = None


def run(policy: DangerPolicy, scores: list[float], t0: float = 0.0) -> list[Event]:
    events: list[Event] = []
    for i, s in enumerate(scores):
        events += policy.push(W(t0 + 2.0 + i * HOP, s))
    return events


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def cfg(**kw: object) -> PolicyConfig:
    base: dict[str, object] = {"on_threshold": 0.6, "off_threshold": 0.35, "n_on": 1, "m_windows": 1,
                               "min_duration_s": 0.0, "release_s": 0.0, "countdown_s": 0.0, "cooldown_s": 0.0}
    base.update(kw)
    return PolicyConfig(**base)  # type: ignore[arg-type]


def test_event_types_and_every_event_has_t() -> None:
    ev = run(DangerPolicy(cfg(countdown_s=2.0)), [0.9] * 8 + [0.0] * 2)
    assert set(types(ev)) <= set(EVENT_TYPES)
    assert all(isinstance(e.t, float) for e in ev)
    assert types(ev)[0] == "danger.started" and "alert" in types(ev) and types(ev)[-1] == "danger.ended"


def test_hysteresis_oscillation_around_on_threshold_does_not_toggle() -> None:
    # risk 0.65 / 0.55 alternating around on=0.6, never below off=0.35: one episode, no end
    seq = [0.65, 0.55] * 10
    ev = run(DangerPolicy(cfg(on_threshold=0.6, off_threshold=0.35)), seq)
    assert types(ev).count("danger.started") == 1
    assert "danger.ended" not in types(ev)
    # without hysteresis (off == on) the same sequence toggles
    flappy = run(DangerPolicy(cfg(on_threshold=0.6, off_threshold=0.6)), seq)
    assert types(flappy).count("danger.started") > 1


def test_episode_ends_only_after_release_time_below_off() -> None:
    p = DangerPolicy(cfg(release_s=1.0))
    ev = run(p, [0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1])
    # two low windows (0.5 s) then high again: still the same episode; three in a row (1.0 s) end it
    assert types(ev).count("danger.started") == 1
    assert types(ev).count("danger.ended") == 1
    assert next(e for e in ev if e.type == "danger.ended").t == pytest.approx(2.0 + 7 * HOP)


def test_single_spike_does_not_start_with_n_of_m() -> None:
    c = cfg(n_on=2, m_windows=3)
    assert run(DangerPolicy(c), [0.1, 0.95, 0.1, 0.1, 0.1, 0.95, 0.1, 0.1]) == []
    # two hits within three windows do
    ev = run(DangerPolicy(c), [0.1, 0.95, 0.1, 0.95, 0.1])
    assert types(ev)[:1] == ["danger.started"] and ev[0].t == pytest.approx(2.0 + 3 * HOP)
    # and 1-of-1 would have fired on the spike
    assert "danger.started" in types(run(DangerPolicy(cfg()), [0.1, 0.95, 0.1]))


def test_minimum_duration() -> None:
    c = cfg(min_duration_s=1.0)
    # 0.5 s of high risk (two windows) is too short
    assert run(DangerPolicy(c), [0.9, 0.9, 0.1, 0.1, 0.1]) == []
    ev = run(DangerPolicy(c), [0.9, 0.9, 0.9, 0.1])
    assert types(ev) == ["danger.started", "countdown", "alert", "danger.ended"]
    assert ev[0].t == pytest.approx(2.0 + 2 * HOP)
    # and without a minimum duration the two windows would have been enough
    assert "danger.started" in types(run(DangerPolicy(cfg()), [0.9, 0.9, 0.1]))


def test_single_spike_never_alerts_with_defaults() -> None:
    p = DangerPolicy()
    ev = run(p, [0.0] * 5 + [1.0] + [0.0] * 60)
    assert "alert" not in types(ev) and "danger.started" not in types(ev)


def test_countdown_then_alert_and_tick_without_audio() -> None:
    p = DangerPolicy(cfg(countdown_s=3.0, cooldown_s=100.0))
    ev = run(p, [0.9])
    assert types(ev) == ["danger.started", "countdown"] and ev[1].remaining == 3.0
    assert p.counting_down
    ticks = p.tick(4.0)
    assert types(ticks) == ["countdown", "countdown"]
    assert [e.remaining for e in ticks] == [2.0, 1.0]
    alert = p.tick(5.0)
    assert types(alert) == ["alert"] and alert[0].t == 5.0 and not p.counting_down
    assert p.tick(9.0) == []


def test_cancel_during_countdown_prevents_alert() -> None:
    p = DangerPolicy(cfg(countdown_s=5.0, cooldown_s=100.0))
    run(p, [0.9, 0.9])
    ev = p.cancel(4.0)
    assert types(ev)[-1] == "cancelled" and ev[-1].t == 4.0 and "alert" not in types(ev)
    later = p.tick(20.0) + run(p, [0.9] * 4, t0=18.5)
    assert "alert" not in types(later)
    assert p.cancel(30.0) == []  # nothing to cancel


def test_a_cancelled_episode_that_goes_on_asks_again_after_the_cooldown() -> None:
    """A cancel silences a false alarm for cooldown_s, not for as long as the sound lasts."""
    p = DangerPolicy(cfg(countdown_s=5.0, cooldown_s=10.0, n_on=2, m_windows=3))
    run(p, [0.9, 0.9])  # t = 2.0, 2.5: started, countdown
    assert types(p.cancel(3.0))[-1] == "cancelled"
    during = run(p, [0.9] * 19, t0=1.5)  # t = 3.5 .. 12.5: still screaming, inside the cooldown
    assert "countdown" not in types(during) and "alert" not in types(during)
    after = run(p, [0.9] * 12, t0=11.0)  # t = 13.0 .. 18.5: the cooldown ends at 13.0
    again = [e for e in after if e.type == "countdown"]
    assert again and again[0].t == 13.0 and again[0].reason.endswith("after-cancel")
    assert "alert" in types(after) and next(e for e in after if e.type == "alert").t == pytest.approx(18.0)
    # without re-arming (the sound stopped and the episode ended), a new episode in the cooldown waits
    q = DangerPolicy(cfg(countdown_s=5.0, cooldown_s=10.0))
    run(q, [0.9])
    q.cancel(2.2)
    quiet = run(q, [0.1], t0=0.5) + run(q, [0.9], t0=1.0)  # t = 2.5 ended; t = 3.0 a new one
    assert types(quiet) == ["danger.ended", "danger.started"] and quiet[1].cooldown
    assert "countdown" not in types(run(q, [0.9] * 4, t0=1.5))  # in the cooldown: no countdown, no re-arm


def test_cancel_after_deadline_is_too_late() -> None:
    p = DangerPolicy(cfg(countdown_s=2.0))
    run(p, [0.9])
    ev = types(p.cancel(10.0))
    assert "alert" in ev and "cancelled" not in ev


def test_confirm_raises_the_countdowns_alert_early_and_nothing_follows() -> None:
    """The stream ends during a countdown (server shutdown): confirm() alerts now; the old countdown's
    ticks and its deadline must not come back (the service would open a second alert for them)."""
    p = DangerPolicy(cfg(countdown_s=10.0, cooldown_s=60.0))
    run(p, [0.9])  # t = 2.0: started, countdown to 12.0
    ev = p.confirm(3.0, "server shutting down")
    assert types(ev) == ["countdown", "alert"]  # the tick due at 3.0, then the alert
    assert ev[-1].t == 3.0 and ev[-1].reason == "server shutting down" and ev[-1].data == {"deadline": 12.0}
    assert not p.counting_down and p.deadline is None
    later = run(p, [0.9] * 30, t0=1.5) + p.tick(40.0)  # still screaming until t = 17.0, in the cooldown
    assert [e for e in later if e.type in ("countdown", "alert")] == []
    assert p.confirm(41.0, "again") == []  # nothing runs: nothing to confirm


def test_confirm_after_the_deadline_gives_the_elapsed_alert_once() -> None:
    p = DangerPolicy(cfg(countdown_s=2.0))
    run(p, [0.9])  # countdown to 4.0
    ev = p.confirm(10.0, "late")
    assert types(ev).count("alert") == 1 and ev[-1].reason == "countdown elapsed"


def test_cooldown_blocks_second_alert_then_allows_it() -> None:
    p = DangerPolicy(cfg(countdown_s=1.0, cooldown_s=30.0))
    first = run(p, [0.9, 0.9, 0.9, 0.0])
    assert types(first).count("alert") == 1
    alert_t = next(e.t for e in first if e.type == "alert")
    # second danger 10 s later: reported, but no countdown and no alert
    second = run(p, [0.9, 0.9, 0.9, 0.9, 0.0], t0=alert_t + 10)
    assert "danger.started" in types(second) and "alert" not in types(second)
    assert "countdown" not in types(second)
    assert next(e for e in second if e.type == "danger.started").cooldown
    # after the cooldown it alerts again
    third = run(p, [0.9, 0.9, 0.9, 0.9, 0.0], t0=alert_t + 40)
    assert types(third).count("alert") == 1


def test_panic_alerts_immediately() -> None:
    p = DangerPolicy(cfg(countdown_s=10.0, cooldown_s=60.0))
    ev = p.panic(3.0)
    assert types(ev) == ["alert"] and ev[0].reason == "panic"
    assert types(p.panic(4.0)) == ["alert"]  # even within cooldown


def test_risk_fusion_weights() -> None:
    p = DangerPolicy()
    assert p.risk(W(1.0, 0.0)) == 0.0
    assert p.risk(W(1.0, 0.9)) == pytest.approx(0.9)
    on = p.config.on_threshold
    calm_help = p.risk(W(1.0, 0.0, keywords=["help"]))
    fear_only = p.risk(W(1.0, 0.0, {"fear": 1.0}))
    both = p.risk(W(1.0, 0.9 * on, {"fear": 0.8}, ["help"]))  # a scream-like voice just below on + "help"
    assert calm_help < on and fear_only == 0.0 and on < both <= 1.0  # distress has no weight by default
    fused = DangerPolicy(PolicyConfig(w_distress=0.15))
    assert fused.risk(W(1.0, 0.0, {"fear": 1.0})) == pytest.approx(0.15)
    assert fused._reasons(W(1.0, 0.0, {"fear": 1.0})) == "distress" and p._reasons(W(1.0, 0.0, {"fear": 1.0})) == "risk"


def test_backbone_scream_score_is_fused_with_its_own_weight() -> None:
    assert PolicyConfig().w_backbone == 0.0  # no backbone head ships (the policy module says why)
    p = DangerPolicy(PolicyConfig(w_backbone=0.4))
    c = p.config
    assert p.risk(W(1.0, 0.0, scream_backbone=None)) == 0.0
    assert p.risk(W(1.0, 0.0, scream_backbone=0.5)) == pytest.approx(c.w_backbone * 0.5)
    both = p.risk(W(1.0, 0.1, scream_backbone=0.3))
    assert both == pytest.approx(1 - (1 - 0.1) * (1 - c.w_backbone * 0.3))  # noisy-OR, not a max
    assert p._reasons(W(1.0, 0.0, scream_backbone=0.9)) == "scream"
    off = DangerPolicy(PolicyConfig(w_backbone=0.0))
    assert off.risk(W(1.0, 0.0, scream_backbone=1.0)) == 0.0


def test_a_held_backbone_score_alone_starts_an_episode() -> None:
    """The cheap head misses a shouted call (P 0.02); the backbone head, computed once every 2 s and
    held over the four windows that overlap it, reaches on_threshold at its operating point."""
    c = PolicyConfig(on_threshold=0.2, w_backbone=0.4)
    op = c.on_threshold / c.w_backbone  # the backbone head's operating point (0.5)
    held = [W(2.0 + i * HOP, 0.02, scream_backbone=op if i < 4 else None) for i in range(8)]
    p = DangerPolicy(c)
    ev = [e for w in held for e in p.push(w)]
    assert types(ev)[:2] == ["danger.started", "countdown"] and ev[0].reason == "scream"
    # the same score on one window only (no hold) does not pass N-of-M / the minimum duration
    once = [W(2.0 + i * HOP, 0.02, scream_backbone=op if i == 0 else None) for i in range(8)]
    q = DangerPolicy(c)
    assert not [e for w in once for e in q.push(w)]
    below = [W(2.0 + i * HOP, 0.02, scream_backbone=0.9 * op if i < 4 else None) for i in range(8)]
    r = DangerPolicy(c)
    assert not [e for w in below for e in r.push(w)]


def test_time_must_not_go_back() -> None:
    p = DangerPolicy()
    p.push(W(5.0, 0.1))
    with pytest.raises(ConfigError, match=r"t=4.0 must not go back in time"):
        p.push(W(4.0, 0.1))
    p.reset()
    p.push(W(1.0, 0.1))


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"on_threshold": 1.5}, r"on_threshold=1.5 must be a number between 0 and 1"),
     ({"off_threshold": 0.7, "on_threshold": 0.6}, r"off_threshold=0.7 must be <= on_threshold=0.6"),
     ({"n_on": 4, "m_windows": 3}, r"n_on=4 must be an integer between 1 and m_windows=3"),
     ({"m_windows": 0}, r"m_windows=0 must be an integer >= 1"),
     ({"countdown_s": -1.0}, r"countdown_s=-1.0 must be a finite number of seconds >= 0"),
     ({"distress_labels": "fear"}, r"distress_labels='fear' must be a list")],
)
def test_config_validation(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PolicyConfig(**kw)
    with pytest.raises(ConfigError, match=r"policy options \['bogus'\]"):
        PolicyConfig.from_dict({"bogus": 1})


def test_finish_runs_the_countdown_out_then_ends_the_open_episode() -> None:
    p = DangerPolicy(cfg(countdown_s=5.0))
    ev = run(p, [0.9] * 3)  # the stream stops mid-countdown, still screaming
    assert types(ev)[0] == "danger.started" and "alert" not in types(ev) and "danger.ended" not in types(ev)
    end = p.finish(p.clock)
    assert [e.type for e in end][-2:] == ["alert", "danger.ended"]
    assert end[-1].reason == "end of stream" and end[-1].t >= end[-2].t == pytest.approx(2.0 + 5.0)
    assert p.finish(end[-1].t) == []  # nothing open any more
    quiet = DangerPolicy(cfg())
    run(quiet, [0.1] * 4)
    assert quiet.finish(quiet.clock + 1) == []  # no episode, no countdown: nothing to close


def test_at_threshold_moves_on_and_keeps_hysteresis() -> None:
    base = PolicyConfig(countdown_s=3.0)
    high, low = base.at_threshold(0.7), base.at_threshold(0.05)
    assert (high.on_threshold, high.off_threshold, high.countdown_s) == (0.7, 0.1, 3.0)
    assert (low.on_threshold, low.off_threshold) == (0.05, 0.05)
