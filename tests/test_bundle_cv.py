"""Bundles (save/load/verify/run) and the CV + training loop on a synthetic corpus."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SR, harmonic, make_synthetic_corpus
from vocalis.bundle import load_bundle
from vocalis.corpora import load_corpus
from vocalis.errors import ModelError
from vocalis.training.cv import cross_validate, evaluate_bundle, train_bundle
from vocalis.training.recipes import RECIPES, Recipe, get_recipe

RECIPE = Recipe("test-classic-logreg", {"type": "classic"}, "logreg", {"C": 1.0})


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_corpus(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def bundle_path(corpus_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "m.vocalis"
    path, _manifest = train_bundle(load_corpus(corpus_root), RECIPE, out, cv_folds=4, use_cache=False)
    return path


def test_speaker_cv_on_separable_synthetic_data(corpus_root: Path) -> None:
    res = cross_validate(load_corpus(corpus_root), RECIPE, folds=4, use_cache=False)
    assert [f["test_speakers"] for f in res["folds"]] == [["spk0"], ["spk1"], ["spk2"], ["spk3"]]
    assert res["wa"] > 0.8 and res["ua"] > 0.8
    assert "speaker-independent" in res["split"]
    assert np.allclose(res["_oof"].sum(axis=1), 1.0)


def test_bundle_roundtrip_matches_training_and_records_its_split(bundle_path: Path, corpus_root: Path) -> None:
    b = load_bundle(bundle_path)
    m = b.manifest
    assert m.labels == ["calm", "angry", "fear"]
    assert m.features["type"] == "classic"
    assert "speaker-independent" in m.metrics["cv"]["split"]
    assert m.calibration["temperature"] > 0
    assert m.training["speakers"] == 4
    pred = b.predict(harmonic(110, 0.8, amp=0.1), SR)
    assert set(pred.probabilities) == set(m.labels)
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert -1 <= pred.valence <= 1 and -1 <= pred.arousal <= 1
    res = evaluate_bundle(b, load_corpus(corpus_root), use_cache=False)
    assert res["wa"] > 0.9  # training data


def test_bundle_has_no_pickle_and_a_sha256(bundle_path: Path) -> None:
    with zipfile.ZipFile(bundle_path) as z:
        assert sorted(z.namelist()) == ["manifest.json", "model.onnx"]
        man = json.loads(z.read("manifest.json"))
    assert len(man["files"]["model.onnx"]["sha256"]) == 64


def _rewrite(src: Path, dst: Path, manifest_edit=None, onnx_edit=None) -> Path:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(src) as z:
        man = json.loads(z.read("manifest.json"))
        onnx = z.read("model.onnx")
    if manifest_edit:
        manifest_edit(man)
    if onnx_edit:
        onnx = onnx_edit(onnx)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("manifest.json", json.dumps(man))
        z.writestr("model.onnx", onnx)
    return dst


def test_tampered_onnx_is_rejected(bundle_path: Path, tmp_path: Path) -> None:
    bad = _rewrite(bundle_path, tmp_path / "t.vocalis", onnx_edit=lambda b: b[:-8] + b"\x00" * 8)
    with pytest.raises(ModelError, match="sha256"):
        load_bundle(bad)


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(format_version=99), "format_version=99"),
    (lambda m: m.update(format="other"), "format="),
    (lambda m: m.update(labels=["only"]), "at least 2"),
    (lambda m: m.update(features={"type": "nope"}), "feature"),
    (lambda m: m.update(labels=["a", "b"]), "labels"),
])
def test_incompatible_manifest_is_rejected(bundle_path: Path, tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    bad = _rewrite(bundle_path, tmp_path / "i.vocalis", manifest_edit=edit)
    with pytest.raises(ModelError, match=match):
        b = load_bundle(bad)
        b.predict(harmonic(200, 0.5), SR)  # label-count mismatch surfaces at inference


def test_not_a_bundle(tmp_path: Path) -> None:
    p = tmp_path / "x.vocalis"
    p.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a Vocalis bundle"):
        load_bundle(p)
    with pytest.raises(ModelError, match="not found"):
        load_bundle(tmp_path / "missing.vocalis")


def test_recipes_are_complete() -> None:
    assert get_recipe().name in RECIPES
    for r in RECIPES.values():
        assert r.description
        r.extractor()  # every feature config rebuilds


def test_augmentation_only_ever_sees_training_speakers(corpus_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    import vocalis.training.cv as cv_mod
    from vocalis.augment import AugmentConfig

    seen: list[set[str]] = []
    original = cv_mod.extract_augmented

    def spy(extractor, items, augment, **kw):  # type: ignore[no-untyped-def]
        seen.append({u.speaker for u in items})
        return original(extractor, items, augment, **kw)

    monkeypatch.setattr(cv_mod, "extract_augmented", spy)
    recipe = replace(RECIPE, augment=AugmentConfig(copies=1).to_dict())
    res = cross_validate(load_corpus(corpus_root), recipe, folds=4, use_cache=False)
    assert len(seen) == 4
    for fold, groups in zip(res["folds"], seen):
        assert groups.isdisjoint(fold["test_speakers"])
        assert len(groups) == 3


def test_augmented_copies_are_seeded_per_clip_and_cached(corpus_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A clip's copies do not depend on the fold (which other clips are augmented with it) and are cached."""
    from vocalis.augment import AugmentConfig, Augmenter
    from vocalis.training.extract import extract_augmented

    monkeypatch.setenv("VOCALIS_CACHE_DIR", str(tmp_path))
    items = load_corpus(corpus_root).items[:6]
    ex = RECIPE.extractor()
    aug = AugmentConfig(copies=2, p=1.0).to_dict()
    both = extract_augmented(ex, items, aug, use_cache=False, workers=1)
    alone = extract_augmented(ex, items[3:4], aug, use_cache=False, workers=1)
    assert len(both) == 2 and all(len(c) == 6 for c in both)
    assert np.allclose(both[0][3], alone[0][0]) and np.allclose(both[1][3], alone[1][0])
    assert not np.allclose(both[0][3], both[1][3])  # two different copies
    other_seed = extract_augmented(ex, items[3:4], aug, seed=1, use_cache=False, workers=1)
    assert not np.allclose(other_seed[0][0], alone[0][0])
    first = extract_augmented(ex, items, aug, workers=1)
    calls: list[int] = []
    monkeypatch.setattr(Augmenter, "__call__", lambda self, x, sr=SR: calls.append(1) or x)
    again = extract_augmented(ex, items, aug, workers=1)
    assert calls == [] and all(np.array_equal(a, b) for ca, cb in zip(first, again) for a, b in zip(ca, cb))
    assert all(np.allclose(a, b) for ca, cb in zip(first, both) for a, b in zip(ca, cb))
