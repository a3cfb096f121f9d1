"""Speaker-independent splits, scores and calibration helpers."""

from __future__ import annotations

import numpy as np
import pytest

from vocalis.corpora.splits import random_folds, speaker_folds
from vocalis.errors import ConfigError, DataError
from vocalis.labels import valence_arousal
from vocalis.training.metrics import expected_calibration_error, fit_temperature, scores


def test_ravdess_six_folds_are_contiguous_actor_blocks() -> None:
    spk = [f"{a:02d}" for a in range(1, 25) for _ in range(60)]
    folds = speaker_folds(spk, 6)
    assert [f[2] for f in folds] == [[f"{a:02d}" for a in range(s, s + 4)] for s in range(1, 25, 4)]
    for tr, te, test_spk in folds:
        assert set(np.asarray(spk)[tr]).isdisjoint(test_spk)
        assert len(tr) + len(te) == len(spk)
    assert sorted(np.concatenate([f[1] for f in folds]).tolist()) == list(range(len(spk)))


def test_fewer_speakers_than_folds_is_leave_one_speaker_out() -> None:
    spk = ["OAF"] * 5 + ["YAF"] * 5
    folds = speaker_folds(spk, 6)
    assert [f[2] for f in folds] == [["OAF"], ["YAF"]]


def test_split_errors() -> None:
    with pytest.raises(DataError, match="at least 2 speakers"):
        speaker_folds(["a"] * 4, 2)
    with pytest.raises(ConfigError, match="folds=1"):
        speaker_folds(["a", "b"], 1)


def test_random_folds_are_stratified_and_cover_everything() -> None:
    labels = ["x"] * 30 + ["y"] * 30
    folds = random_folds(60, 5, labels, seed=1)
    seen = np.concatenate([te for _, te, _ in folds])
    assert sorted(seen.tolist()) == list(range(60))
    for _, te, _ in folds:
        assert sum(labels[i] == "x" for i in te) == 6


def test_scores_wa_ua_differ_on_imbalance() -> None:
    y_true = ["a"] * 8 + ["b"] * 2
    y_pred = ["a"] * 10
    s = scores(y_true, y_pred, ["a", "b"])
    assert s["wa"] == 0.8 and s["ua"] == 0.5
    assert s["confusion"] == [[8, 0], [2, 0]]
    assert s["per_class"]["b"]["recall"] == 0.0


def test_temperature_scaling_reduces_overconfidence(rng: np.random.Generator) -> None:
    n, k = 2000, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits * 4)  # overconfident
    p /= p.sum(1, keepdims=True)
    t = fit_temperature(p, y)
    assert t > 2
    q = np.exp(np.log(p) / t)
    q /= q.sum(1, keepdims=True)
    assert expected_calibration_error(q, y) < expected_calibration_error(p, y)


@pytest.mark.parametrize("probs,sign_v,sign_a", [({"happy": 0.9, "neutral": 0.1}, 1, 1),
                                                 ({"sad": 1.0}, -1, -1), ({"angry": 0.7, "fear": 0.3}, -1, 1)])
def test_valence_arousal_signs(probs: dict[str, float], sign_v: int, sign_a: int) -> None:
    v, a = valence_arousal(probs)
    assert -1 <= v <= 1 and -1 <= a <= 1
    assert np.sign(v) == sign_v and np.sign(a) == sign_a


def test_multi_corpus_folds_never_hold_out_a_whole_corpus() -> None:
    spk = [f"ravdess:{a:02d}" for a in range(1, 25) for _ in range(3)] + ["tess:OAF"] * 5 + ["tess:YAF"] * 5
    corpora = [s.split(":")[0] for s in spk]
    folds = speaker_folds(spk, 6, corpora)
    assert len(folds) == 6
    assert folds[0][2] == ["ravdess:01", "ravdess:02", "ravdess:03", "ravdess:04", "tess:OAF"]
    assert folds[1][2][-1] == "tess:YAF"
    for tr, _, test_spk in folds:
        train_spk = set(np.asarray(spk)[tr])
        assert train_spk.isdisjoint(test_spk)
        assert any(s.startswith("tess:") for s in train_spk)  # TESS always represented in training
