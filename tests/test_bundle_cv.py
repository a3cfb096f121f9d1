"""Bundles (save/load/verify/run) and the CV + training loop on a synthetic corpus."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SR, harmonic, make_synthetic_corpus
from vocalis.bundle import Manifest, default_model_path, load_bundle, pack_bundle, save_bundle
from vocalis.bundle.manifest import manifest_digest
from vocalis.corpora import load_corpus
from vocalis.danger import scream_model_path
from vocalis.errors import AudioError, ModelError
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


def _rewrite(src: Path, dst: Path, manifest_edit=None, onnx_edit=None, reseal: bool = False) -> Path:  # type: ignore[no-untyped-def]
    """Copy a bundle, editing its manifest/graph; ``reseal`` recomputes ``manifest_sha256`` as a packer would."""
    with zipfile.ZipFile(src) as z:
        man = json.loads(z.read("manifest.json"))
        onnx = z.read("model.onnx")
    if manifest_edit:
        manifest_edit(man)
    if onnx_edit:
        onnx = onnx_edit(onnx)
    if reseal:
        man["manifest_sha256"] = manifest_digest(man)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("manifest.json", json.dumps(man))
        z.writestr("model.onnx", onnx)
    return dst


def test_tampered_onnx_is_rejected(bundle_path: Path, tmp_path: Path) -> None:
    bad = _rewrite(bundle_path, tmp_path / "t.vocalis", onnx_edit=lambda b: b[:-8] + b"\x00" * 8)
    with pytest.raises(ModelError, match="sha256"):
        load_bundle(bad)


def _swap_first_labels(m: dict) -> None:  # type: ignore[type-arg]
    m["labels"][0], m["labels"][1] = m["labels"][1], m["labels"][0]


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(format_version=99), "format_version=99"),
    (lambda m: m.update(format="other"), "format="),
    (lambda m: m.update(labels=["only"]), "at least 2"),
    (lambda m: m.update(labels=[]), "at least 2"),
    (lambda m: m.update(labels="calm,angry,fear"), "at least 2"),
    (lambda m: m.update(labels=["calm", "calm", "fear"]), r"must be unique \(\['calm'\] repeated\)"),
    (lambda m: m.update(labels=["calm", "", "fear"]), "must be non-empty strings"),
    (lambda m: m.update(labels=["calm", 3, "fear"]), "at least 2 strings"),
    (lambda m: m.update(features={"type": "nope"}), "feature"),
    (lambda m: m.update(features=["classic"]), r"features=\['classic'\] must be a JSON object"),
    (lambda m: m.update(calibration=[1.5]), "calibration=.* must be a JSON object"),
    # the graph has 3 outputs: a label count other than 3 is refused at load, not at the first predict
    (lambda m: m.update(labels=["a", "b"]), r"shape=\[None, 3\] must be \[batch, 2\].*labels=\['a', 'b'\]"),
    (lambda m: m.update(labels=["calm", "angry", "fear", "sad"]), r"must be \[batch, 4\]"),
])
def test_incompatible_manifest_is_rejected(bundle_path: Path, tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    bad = _rewrite(bundle_path, tmp_path / "i.vocalis", manifest_edit=edit, reseal=True)
    with pytest.raises(ModelError, match=match):
        load_bundle(bad)


@pytest.mark.parametrize("temperature,shown", [
    (0, "0"), (0.0, "0.0"), (-1, "-1"), (float("nan"), "nan"), (float("inf"), "inf"), ("x", "'x'"), ("1.5", "'1.5'"),
    (True, "True"), (None, "None"),
])
def test_bad_calibration_temperature_is_rejected_at_load(bundle_path: Path, tmp_path: Path,
                                                         temperature: object, shown: str) -> None:
    bad = _rewrite(bundle_path, tmp_path / "t.vocalis", reseal=True,
                   manifest_edit=lambda m: m.update(calibration={"temperature": temperature}))
    with pytest.raises(ModelError, match=rf"temperature={re.escape(shown)} must be a finite number > 0"):
        load_bundle(bad)


def test_any_temperature_rule_break_is_refused_before_a_bundle_is_written(bundle_path: Path) -> None:
    b = load_bundle(bundle_path)
    for t in (0.0, float("nan"), -2.0):
        m = Manifest.from_dict({**b.manifest.to_dict(), "calibration": {}})
        m.calibration["temperature"] = t
        with pytest.raises(ModelError, match=r"temperature=.* must be a finite number > 0"):
            pack_bundle(m, b._onnx)
    with pytest.raises(ModelError, match="must be unique"):
        pack_bundle(Manifest(labels=["a", "a"], features=b.manifest.features), b._onnx)


@pytest.mark.parametrize("edit", [
    _swap_first_labels,
    lambda m: m["calibration"].update(temperature=m["calibration"]["temperature"] * 2),
    lambda m: m["features"].update(n_mfcc=m["features"]["n_mfcc"] + 1),
    lambda m: m["metrics"]["cv"].update(wa=0.99),
    lambda m: m.update(extra="x"),
    lambda m: m.update(manifest_sha256="0" * 64),
    lambda m: m.update(manifest_sha256=""),
], ids=["swapped-labels", "temperature", "features", "metrics", "new-field", "other-digest", "empty-digest"])
def test_an_edited_manifest_is_refused_as_altered(bundle_path: Path, tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    bad = _rewrite(bundle_path, tmp_path / "a.vocalis", manifest_edit=edit)
    with pytest.raises(ModelError, match=r"manifest\.json digest=.* does not match its manifest_sha256=.*the bundle was altered"):
        load_bundle(bad)
    # the same edit written by the packer is a valid (if different) bundle
    if edit is _swap_first_labels:
        good = _rewrite(bundle_path, tmp_path / "s.vocalis", manifest_edit=edit, reseal=True)
        x = harmonic(200, 0.5)
        before, after = load_bundle(bundle_path), load_bundle(good)
        assert after.labels[:2] == before.labels[1::-1]
        p0, p1 = before.predict(x, SR).probabilities, after.predict(x, SR).probabilities
        assert list(p0.values()) == list(p1.values()) and p0 != p1  # same columns, other names: what the digest guards


def test_pack_bundle_records_the_manifest_digest(bundle_path: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle_path) as z:
        man = json.loads(z.read("manifest.json"))
    assert re.fullmatch("[0-9a-f]{64}", man["manifest_sha256"])
    assert man["manifest_sha256"] == manifest_digest(man)
    assert manifest_digest({**man, "labels": man["labels"][::-1]}) != man["manifest_sha256"]
    # re-packing a loaded bundle gives the same digest (everything but the digest is covered, nothing else moves)
    b = load_bundle(bundle_path)
    again = save_bundle(tmp_path / "again.vocalis", b.manifest, b._onnx)
    with zipfile.ZipFile(again) as z:
        assert json.loads(z.read("manifest.json")) == man


def test_legacy_bundle_without_a_manifest_digest_still_loads(bundle_path: Path, tmp_path: Path) -> None:
    legacy = _rewrite(bundle_path, tmp_path / "legacy.vocalis", manifest_edit=lambda m: m.pop("manifest_sha256"))
    with zipfile.ZipFile(legacy) as z:
        assert "manifest_sha256" not in json.loads(z.read("manifest.json"))
    x = harmonic(150, 0.6)
    assert load_bundle(legacy).predict(x, SR) == load_bundle(bundle_path).predict(x, SR)
    # its content is still validated
    bad = _rewrite(legacy, tmp_path / "legacy-bad.vocalis", manifest_edit=lambda m: m.update(calibration={"temperature": 0}))
    with pytest.raises(ModelError, match="temperature=0 must be"):
        load_bundle(bad)


@pytest.mark.parametrize("path", [default_model_path(), scream_model_path()], ids=["default", "scream"])
def test_shipped_bundles_carry_and_pass_the_manifest_digest(path: Path) -> None:
    with zipfile.ZipFile(path) as z:
        man = json.loads(z.read("manifest.json"))
    assert man["manifest_sha256"] == manifest_digest(man)
    assert load_bundle(path).labels == man["labels"]


def test_a_graph_with_another_label_count_is_refused_at_load(bundle_path: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle_path)  # a 3-class graph
    m = Manifest(labels=["x", "y"], features=b.manifest.features)
    p = save_bundle(tmp_path / "two.vocalis", m, b._onnx)  # packed the regular way: the digest is right
    with pytest.raises(ModelError, match=r"output 'probabilities' shape=\[None, 3\] must be \[batch, 2\]"):
        load_bundle(p)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.int64])
def test_integer_audio_is_refused_not_mispredicted(bundle_path: Path, dtype: type) -> None:
    b = load_bundle(bundle_path)
    x = harmonic(200, 0.5)
    pcm = (x * np.iinfo(dtype).max).astype(dtype)
    with pytest.raises(AudioError, match=f"dtype={np.dtype(dtype).name} must be floating point"):
        b.predict(pcm, SR)
    with pytest.raises(AudioError, match="must be floating point"):
        b.predict_proba(pcm, SR)
    # the hinted conversion gives back the float prediction
    if dtype is np.int16:
        assert b.predict(pcm / 32768, SR).label == b.predict(x, SR).label


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


def test_features_batch_matches_features_per_window_of_any_length() -> None:
    """The live server scores many sessions' windows in one call (mixed lengths: a stream's last,
    partial window); every row must be that window's own vector, in the given order."""
    from vocalis.errors import ConfigError

    b = load_bundle(scream_model_path())
    rng = np.random.default_rng(3)
    tone = harmonic(220.0, 2.0)
    audios = [tone, 0.1 * rng.standard_normal(SR).astype(np.float32), np.zeros(2 * SR, np.float32),
              tone[: SR], tone[::-1].copy()]
    got = b.features_batch(audios)
    want = np.stack([b.features(a) for a in audios])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * float(np.abs(want).max()))
    assert np.array_equal(b.features_batch(audios[:1]), want[:1])
    with pytest.raises(ConfigError, match="at least one"):
        b.features_batch([])
