"""Cross-validation of the scream detector through the policy (vocalis.danger.validation)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SR, corpus_dir
from vocalis.danger.policy import PolicyConfig
from vocalis.danger.validation import (
    ValidationStream,
    choose_operating_point,
    operating_point_table,
    policy_metrics,
    run_policy,
    stream_windows,
)
from vocalis.errors import DataError


def clip(scores: list[float], label: int, subset: str = "s", keywords: list[str] | None = None) -> ValidationStream:
    return ValidationStream(name=f"c{id(scores)}", fold=0, label=label, subset=subset,
                            seconds=2.0 + 0.5 * (len(scores) - 1), scores=np.asarray(scores), clip=0,
                            keywords=keywords or [])


def test_stream_windows_match_the_streaming_predictor() -> None:
    x = np.arange(3 * SR, dtype=np.float32)
    w = stream_windows(x)
    assert len(w) == 3 and all(v.size == 2 * SR for v in w) and w[-1][-1] == x[-1] and w[1][0] == x[SR // 2]
    short = stream_windows(np.ones(SR, np.float32))
    assert len(short) == 1 and short[0][: SR].sum() == 0 and short[0][SR:].sum() == SR  # zeros at the front


def test_policy_metrics_count_clips_and_false_alerts() -> None:
    cfg = PolicyConfig(on_threshold=0.5, off_threshold=0.1)
    non_danger = np.zeros(7200)  # one hour of windows
    non_danger[100:104] = 0.9  # one burst: an episode and (the countdown is not cancelled) an alert
    non_danger[103 + 200 : 103 + 204] = 0.9  # a second one after the cooldown
    streams = [clip([0.9, 0.9, 0.9], 1), clip([0.9, 0.0, 0.9], 1), clip([0.1, 0.2, 0.1], 0, "calm"),
               clip([0.9, 0.9, 0.0], 0, "calm"),
               ValidationStream("nd", 0, 0, "non_danger", 3600.0, non_danger)]
    m = policy_metrics(streams, cfg)
    assert m["clip"] == {"f1": 0.5, "precision": 0.5, "recall": 0.5, "tp": 1, "fp": 1, "fn": 1}
    assert m["by_subset"] == {"s": {"n": 2, "flagged": 1}, "calm": {"n": 2, "flagged": 1}}
    assert m["alerts"] == 2 and m["alerts_per_hour"] == 2.0 and m["hours"] == 1.0


def test_keyword_hits_arrive_where_asr_would_run() -> None:
    # ASR runs on the first window with scream >= 0.1 (t=2.5 s) and not again within one window length
    cfg = PolicyConfig(on_threshold=0.4, off_threshold=0.1, w_keyword=0.2)
    assert not run_policy(clip([0.05, 0.3, 0.3, 0.3], 1, keywords=["help"]), cfg)  # one window at 0.44 of 2-of-3
    once = PolicyConfig(on_threshold=0.4, off_threshold=0.1, w_keyword=0.2, n_on=1, m_windows=1, min_duration_s=0.0)
    ev = run_policy(clip([0.3, 0.35, 0.35], 1, keywords=["help"]), once)
    assert ev[0].type == "danger.started" and ev[0].t == 2.0 and "keyword:help" in ev[0].reason
    assert not run_policy(clip([0.3, 0.35, 0.35], 1), once)  # the same voice without the word


def test_choose_operating_point_respects_the_false_alert_limit() -> None:
    def row(f1: float, fa: float) -> dict[str, object]:
        return {"mean_clip_f1": f1, "max_false_alerts_per_hour": fa}

    table = {"0.20": row(0.95, 2.0), "0.25": row(0.90, 0.4), "0.30": row(0.90, 0.0), "0.40": row(0.85, 0.0)}
    assert choose_operating_point(table) == 0.25  # best F1 within 0.5/h; ties go to the lower threshold
    assert choose_operating_point(table, max_fa_per_hour=5.0) == 0.20
    assert choose_operating_point({"0.2": row(0.9, 3.0), "0.3": row(0.8, 1.0)}) == 0.3  # none within: fewest


def test_operating_point_table_uses_the_policy() -> None:
    streams = {"original": [clip([0.3, 0.3, 0.3], 1), clip([0.6, 0.6, 0.0], 0)]}
    t = operating_point_table(streams, [0.25, 0.5])
    assert t["0.25"]["clip_f1"]["original"] == pytest.approx(2 / 3, abs=1e-4) and t["0.50"]["clip_f1"]["original"] == 0.0
    assert t["0.25"]["by_subset"]["original"]["s"] == {"n": 2, "flagged": 2}


@pytest.mark.corpus
def test_unknown_user_clips_are_grouped_by_recording_day() -> None:
    from vocalis.danger.train import session_group

    late = session_group("Misc/help-x-20190622195929-abc.flac", "unknown")
    assert late == session_group("Misc/help-x-20190622200007-abc.flac", "unknown")  # 38 s apart, across 20:00
    assert late == session_group("Misc/help-x-20190622170831-abc.flac", "unknown")  # same day, hours earlier
    assert late != session_group("Misc/help-x-20190623183440-abc.flac", "unknown")
    assert session_group("a/help-20190622195929.flac", "61da3711fc5f") == "user:61da3711fc5f"
    assert session_group("a/no-stamp.flac", "unknown") == "file:no-stamp"


def test_balanced_folds_keep_groups_whole_and_sizes_even() -> None:
    from vocalis.danger.validation import _balanced_folds

    sizes = {"big": 40, "mid": 20, **{f"s{i}": 4 for i in range(10)}}  # 100 clips
    groups = [g for g, n in sizes.items() for _ in range(n)]
    strata = ["a" if i % 2 else "b" for i in range(len(groups))]
    of = _balanced_folds(groups, strata, 3, seed=1)
    assert set(of) == set(sizes) and set(of.values()) == {0, 1, 2}
    per = [sum(n for g, n in sizes.items() if of[g] == f) for f in range(3)]
    assert sorted(per) == [28, 32, 40]  # the 40-clip group alone; the rest split evenly


def test_held_out_split_keeps_recording_days_apart() -> None:
    import datetime as dt
    import re
    from itertools import pairwise

    from vocalis.danger.train import scream_dataset

    clips = [c for c in scream_dataset(corpus_dir("screams").parent) if c.source == "screams"]
    stamps = []
    for c in clips:
        m = re.search(r"-(\d{14})-", str(c.path))
        if m and c.group.startswith("day:"):
            stamps.append((dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S"), c.split))
    stamps.sort()
    assert len(stamps) > 200
    for (t0, s0), (t1, s1) in pairwise(stamps):
        assert s0 == s1 or (t1 - t0) > dt.timedelta(hours=6), (t0, t1)  # a sitting is never cut in two
    test = sum(c.split == "test" for c in clips) / len(clips)
    assert 0.25 <= test <= 0.35


def test_cv_folds_keep_people_apart() -> None:
    from vocalis.danger.train import scream_dataset, validation_split
    from vocalis.danger.validation import cv_folds

    clips = scream_dataset(corpus_dir("screams").parent)
    folds = cv_folds(clips)
    assert all((f < 0) == (c.split == "test") for c, f in zip(clips, folds))
    groups: dict[str, set[int]] = {}
    for c, f in zip(clips, folds):
        groups.setdefault(c.group, set()).add(int(f))
    assert all(len(v) == 1 for v in groups.values())  # a person / session / actor is in one fold
    val = validation_split(clips)
    scr = np.array([c.source == "screams" for c in clips])
    assert np.array_equal(val & scr, (folds == 0) & scr)  # fold 0 = the validation split's screams
    assert {int(f) for c, f in zip(clips, folds) if c.source == "tess" and f >= 0} == {4}
    per_fold = [sum(1 for c, f in zip(clips, folds) if f == k and c.source == "screams") for k in range(4)]
    assert min(per_fold) >= 30


def test_held_backbone_scores_repeat_over_the_overlapping_windows_and_reach_the_policy() -> None:
    from vocalis.danger.validation import held_backbone

    held = held_backbone(np.array([0.1, 0.9, 0.2]), 10, 4)  # runs on windows 0, 4, 8
    assert held.tolist() == [0.1] * 4 + [0.9] * 4 + [0.2] * 2
    with pytest.raises(DataError, match="cover 4 windows; the stream has 10"):
        held_backbone(np.array([0.1]), 10, 4)
    cfg = PolicyConfig(on_threshold=0.5, off_threshold=0.1, w_backbone=0.5)
    cheap = [0.05] * 12
    with_head = ValidationStream(name="c", fold=0, label=1, subset="s", seconds=7.5, scores=np.asarray(cheap),
                                 clip=0, backbone=held_backbone(np.array([0.0, 1.0, 0.0]), 12, 4))
    ev = run_policy(with_head, cfg)
    assert [e.type for e in ev][:1] == ["danger.started"] and 4.0 <= ev[0].t <= 6.0  # windows 4-7 (t 4.0-5.5)
    without = ValidationStream(name="c", fold=0, label=1, subset="s", seconds=7.5, scores=np.asarray(cheap), clip=0)
    assert run_policy(without, cfg) == []


def test_stream_crops_play_each_speaker_as_one_stream() -> None:
    from vocalis.danger.train import Clip, stream_crops
    from vocalis.training.recipes import Recipe

    clips = [Clip("screams", 1, "user:a", "train", synth=0)]
    clips += [Clip("ravdess", 0, f"ravdess:0{a}", "train", synth=10 * a + k) for a in (1, 2) for k in range(3)]
    clips += [Clip("ravdess", 0, "ravdess:13", "test", synth=99)]
    recipe = Recipe("rms", {"type": "classic", "features": ["rms"], "stats": ["mean"]}, "logreg")
    f = stream_crops(clips, recipe, workers=1)
    assert set(f.clip_index.tolist()) == {1, 4}  # one owner per training-side speaker, the test side left out
    per_speaker = [int((f.clip_index == i).sum()) for i in (1, 4)]
    audio_s = [sum(clips[i].audio().size for i in range(j, j + 3)) / SR for j in (1, 4)]
    for n, s in zip(per_speaker, audio_s):  # 2 s windows every 2 s over the clips and their pauses
        assert s / 2.0 - 1 <= n <= (s + 3 * 1.5) / 2.0 + 1
    again = stream_crops(clips, recipe, workers=2)
    assert np.array_equal(f.X, again.X)  # seeded per speaker: the same stream every time


def test_backbone_threshold_may_add_recall_but_no_false_alerts() -> None:
    from vocalis.danger.train import choose_backbone_threshold

    def stream(cheap: list[float], head: list[float], label: int, clip: int = 0) -> ValidationStream:
        n = len(cheap)
        return ValidationStream(name=f"s{clip}", fold=0, label=label, subset="non_danger" if clip < 0 else "s",
                                seconds=3600.0 if clip < 0 else 2.0 + 0.5 * (n - 1), scores=np.asarray(cheap),
                                clip=clip, backbone=np.asarray(head))

    quiet = [0.0] * 7200  # one hour of non-danger windows
    loud_head = list(quiet)
    loud_head[1000:1004] = [0.75] * 4  # the head alone would alarm at thresholds <= 0.75
    missed = stream([0.0] * 8, [0.92] * 4 + [0.0] * 4, 1)  # a scream call only the head finds (0.92)
    found = stream([0.9] * 8, [0.9] * 8, 1, 1)
    calm = stream([0.0] * 8, [0.1] * 8, 0, 2)
    streams = {"original": [missed, found, calm, stream(quiet, loud_head, 0, -1)]}
    out = choose_backbone_threshold(streams, (0.5, 0.7, 0.8, 0.9, 0.95))
    t = out["by_threshold"]
    assert t["none"]["mean_clip_f1"] < t["0.80"]["mean_clip_f1"] == t["0.90"]["mean_clip_f1"]
    assert t["0.70"]["false_alerts_per_hour"]["original"] == 1.0 > t["none"]["false_alerts_per_hour"]["original"]
    # 0.5 / 0.7 add a false alert; 0.8 and 0.9 find the call without one (tie: the higher); 0.95 misses it
    assert out["threshold"] == 0.9 and out["w_backbone"] == round(PolicyConfig().on_threshold / 0.9, 4)
    worse = choose_backbone_threshold({"original": [missed, found, calm, stream(quiet, [0.99] * 7200, 0, -1)]},
                                      (0.5, 0.9))
    assert worse["threshold"] is None and worse["w_backbone"] == 0.0  # every threshold adds false alerts
    useless = choose_backbone_threshold({"original": [found, calm, stream(quiet, quiet, 0, -1)]}, (0.5, 0.9))
    assert useless["threshold"] is None  # allowed, but no better than the cheap detector alone


def test_calm_calls_of_a_scream_environment_are_scored_but_never_fitted() -> None:
    from vocalis.danger.train import Clip, _fit, trainable

    calm_env = Clip("screams", 1, "g", "train", subset="scream_call", extra={"emotion": "calm"})
    screamed = Clip("screams", 1, "g", "train", subset="scream_call", extra={"emotion": "fearful"})
    calm_safe = Clip("screams", 0, "g", "train", subset="calm_call", extra={"emotion": "calm"})
    assert not trainable(calm_env) and trainable(screamed) and trainable(calm_safe)

    class Crops:  # one 1-D crop per clip: the calm-env positive sits on the negatives' side
        X = np.array([[0.0], [0.1], [1.0], [1.1], [0.05]])
        clip_index = np.array([2, 2, 1, 1, 0])

    seen: list[np.ndarray] = []

    class Est:
        def fit(self, X: np.ndarray, y: np.ndarray) -> None:
            seen.append(X.ravel())

    class R:  # the one thing _fit asks of a Recipe
        def estimator(self, seed: int = 0) -> Est:
            return Est()

    _fit(R(), 0, [calm_env, screamed, calm_safe], np.ones(3, bool), Crops())  # type: ignore[arg-type]
    assert sorted(seen[0].tolist()) == [0.0, 0.1, 1.0, 1.1]  # the calm-env crop (0.05) was left out


def test_loud_crops_copy_only_the_non_danger_clips_at_a_hot_microphone_level() -> None:
    from vocalis.danger.train import SEED, Clip, crops, loud_copy, loud_crops
    from vocalis.training.recipes import Recipe

    clips = [Clip("screams", 1, "user:a", "train", synth=3), Clip("synthetic", 0, "synthetic:0", "train", synth=5),
             Clip("ravdess", 0, "ravdess:01", "train", synth=7), Clip("screams", 1, "user:b", "train", synth=9)]
    recipe = Recipe("rms", {"type": "classic", "features": ["rms"], "stats": ["mean"]}, "logreg")
    f = loud_crops(clips, recipe, workers=1)
    assert set(f.clip_index.tolist()) == {1, 2} and f.whole.shape[0] == 0  # the danger clips get no copy
    ex = recipe.extractor()
    for i in (1, 2):  # each crop is the documented, seeded loud copy of its clip
        x = loud_copy(clips[i].audio(), np.random.default_rng(SEED + 88_000 + i))
        want = np.stack([ex(w, SR) for w in crops(x, step_s=1.0)])
        assert np.allclose(f.X[f.clip_index == i], want, atol=1e-6)
    quiet = np.stack([ex(w, SR) for w in crops(clips[2].audio(), step_s=1.0)])
    assert f.X[f.clip_index == 2].mean() > quiet.mean()  # louder than the clip itself
    assert not np.array_equal(loud_crops(clips, recipe, copy=1, workers=1).X, f.X)  # another copy, other draws
