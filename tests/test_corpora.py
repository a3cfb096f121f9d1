"""Corpus loaders: file-name conventions, manifests, folder-per-label, load_corpus."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vocalis.corpora import (
    Corpus,
    cremad,
    detect_layout,
    emodb,
    folders,
    load_corpus,
    load_manifest,
    parse_label_map,
    ravdess,
    savee,
    speaker_folds,
    tess,
    write_manifest,
)
from vocalis.errors import ConfigError, DataError

SR = 16_000
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _wav(path: Path, seconds: float = 0.2) -> Path:
    """Write a short 440 Hz sine (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * seconds)) / SR
    sf.write(path, 0.1 * np.sin(2 * np.pi * 440 * t), SR)
    return path


def _make(root: Path, names: list[str]) -> Path:
    for n in names:
        _wav(root / n)
    return root


def _by_name(c: Corpus) -> dict[str, tuple[str, str, str | None, dict[str, str]]]:
    return {u.path.name: (u.label, u.speaker, u.gender, dict(u.extra)) for u in c.items}


# ----------------------------------------------------------------------------- layouts

RAVDESS_FILES = [
    "Actor_01/03-01-01-01-01-01-01.wav",
    "Actor_02/03-01-06-02-02-02-02.wav",
    "Actor_07/03-01-08-01-01-02-07.flac",
    "Actor_24/03-02-02-02-01-01-24.wav",
]


def test_ravdess_parses_every_field(tmp_path: Path) -> None:
    root = _make(tmp_path / "rav", RAVDESS_FILES)
    assert ravdess.matches(root)
    c = ravdess.load(root)
    assert c.name == "ravdess" and len(c) == 4
    assert all(u.path.is_absolute() and u.corpus == "ravdess" for u in c.items)
    assert _by_name(c) == {
        "03-01-01-01-01-01-01.wav": ("neutral", "01", "male", {
            "modality": "audio-only", "channel": "speech", "intensity": "normal",
            "statement": "Kids are talking by the door", "repetition": "01"}),
        "03-01-06-02-02-02-02.wav": ("fear", "02", "female", {
            "modality": "audio-only", "channel": "speech", "intensity": "strong",
            "statement": "Dogs are sitting by the door", "repetition": "02"}),
        "03-01-08-01-01-02-07.flac": ("surprise", "07", "male", {
            "modality": "audio-only", "channel": "speech", "intensity": "normal",
            "statement": "Kids are talking by the door", "repetition": "02"}),
        "03-02-02-02-01-01-24.wav": ("calm", "24", "female", {
            "modality": "audio-only", "channel": "song", "intensity": "strong",
            "statement": "Kids are talking by the door", "repetition": "01"}),
    }


@pytest.mark.parametrize("stem", ["03-01-09-01-01-01-01", "03-01-01-01-01-01-25", "03-01-01-01-01-01", "x"])
def test_ravdess_rejects_bad_codes(stem: str) -> None:
    assert ravdess.parse(Path(f"{stem}.wav")) is None


def test_tess_parses_last_token_and_oa_quirk(tmp_path: Path) -> None:
    root = _make(tmp_path / "tess", [
        "OAF_angry/OAF_back_angry.wav",
        "OAF_neutral/OA_bite_neutral.wav",
        "YAF_Pleasant_surprise/YAF_bar_ps.wav",
        "YAF_fear/YAF_base_fear.wav",  # folder casing differs between copies: ignored
    ])
    assert tess.matches(root)
    assert _by_name(tess.load(root)) == {
        "OAF_back_angry.wav": ("angry", "OAF", "female", {"word": "back", "age": "64"}),
        "OA_bite_neutral.wav": ("neutral", "OAF", "female", {"word": "bite", "age": "64"}),
        "YAF_bar_ps.wav": ("surprise", "YAF", "female", {"word": "bar", "age": "26"}),
        "YAF_base_fear.wav": ("fear", "YAF", "female", {"word": "base", "age": "26"}),
    }


def test_cremad_parses_and_knows_gender(tmp_path: Path) -> None:
    root = _make(tmp_path / "crema" / "AudioWAV", [
        "1001_DFA_ANG_XX.wav", "1002_IEO_FEA_HI.wav", "1091_TSI_NEU_XX.wav",
        "1090_WSI_DIS_LO.wav", "1013_IWW_HAP_MD.wav", "1005_ITH_SAD_XX.wav",
    ]).parent
    assert cremad.matches(root)
    assert _by_name(cremad.load(root)) == {
        "1001_DFA_ANG_XX.wav": ("angry", "1001", "male", {"sentence": "DFA", "intensity": "XX"}),
        "1002_IEO_FEA_HI.wav": ("fear", "1002", "female", {"sentence": "IEO", "intensity": "HI"}),
        "1091_TSI_NEU_XX.wav": ("neutral", "1091", "female", {"sentence": "TSI", "intensity": "XX"}),
        "1090_WSI_DIS_LO.wav": ("disgust", "1090", "male", {"sentence": "WSI", "intensity": "LO"}),
        "1013_IWW_HAP_MD.wav": ("happy", "1013", "female", {"sentence": "IWW", "intensity": "MD"}),
        "1005_ITH_SAD_XX.wav": ("sad", "1005", "male", {"sentence": "ITH", "intensity": "XX"}),
    }
    assert len(cremad.FEMALE_ACTORS) == 43  # CREMA-D: 48 male, 43 female actors


def test_savee_flat_and_nested(tmp_path: Path) -> None:
    flat = _make(tmp_path / "flat", ["DC_a01.wav", "JE_sa15.wav", "KL_su03.wav", "JK_n30.wav"])
    nested = _make(tmp_path / "nested" / "AudioData", ["DC/d02.wav", "JK/h11.wav", "KL/f07.wav"])
    assert savee.matches(flat) and savee.matches(nested)
    assert _by_name(savee.load(flat)) == {
        "DC_a01.wav": ("angry", "DC", "male", {"sentence": "01"}),
        "JE_sa15.wav": ("sad", "JE", "male", {"sentence": "15"}),
        "KL_su03.wav": ("surprise", "KL", "male", {"sentence": "03"}),
        "JK_n30.wav": ("neutral", "JK", "male", {"sentence": "30"}),
    }
    assert _by_name(savee.load(nested)) == {
        "d02.wav": ("disgust", "DC", "male", {"sentence": "02"}),
        "h11.wav": ("happy", "JK", "male", {"sentence": "11"}),
        "f07.wav": ("fear", "KL", "male", {"sentence": "07"}),
    }
    assert savee.parse(Path("XX/a01.wav")) is None  # nested names need a SAVEE speaker folder


def test_emodb_keeps_boredom(tmp_path: Path) -> None:
    root = _make(tmp_path / "emodb" / "wav", [
        "03a01Fa.wav", "08b02La.wav", "10a04Wb.wav", "16b10Ec.wav",
        "11a05Ab.wav", "14a07Ta.wav", "09b03Nb.wav",
    ]).parent
    assert emodb.matches(root)
    assert _by_name(emodb.load(root)) == {
        "03a01Fa.wav": ("happy", "03", "male", {"text": "a01", "version": "a"}),
        "08b02La.wav": ("boredom", "08", "female", {"text": "b02", "version": "a"}),
        "10a04Wb.wav": ("angry", "10", "male", {"text": "a04", "version": "b"}),
        "16b10Ec.wav": ("disgust", "16", "female", {"text": "b10", "version": "c"}),
        "11a05Ab.wav": ("fear", "11", "male", {"text": "a05", "version": "b"}),
        "14a07Ta.wav": ("sad", "14", "female", {"text": "a07", "version": "a"}),
        "09b03Nb.wav": ("neutral", "09", "female", {"text": "b03", "version": "b"}),
    }
    assert emodb.parse(Path("05a01Fa.wav")) is None  # 05 is not an EmoDB speaker
    c = load_corpus(root, label_map={"boredom": "calm"})
    assert "calm" in c.labels and "boredom" not in c.labels


def test_layouts_do_not_claim_each_other(tmp_path: Path) -> None:
    roots = {
        "ravdess": _make(tmp_path / "ravdess", RAVDESS_FILES),
        "tess": _make(tmp_path / "tess", ["OAF_angry/OAF_back_angry.wav"]),
        "cremad": _make(tmp_path / "cremad", ["1001_DFA_ANG_XX.wav"]),
        "savee": _make(tmp_path / "savee", ["DC_a01.wav"]),
        "emodb": _make(tmp_path / "emodb", ["03a01Fa.wav"]),
    }
    mods = {m.NAME: m for m in (ravdess, tess, cremad, savee, emodb)}
    for name, root in roots.items():
        assert [n for n, m in mods.items() if m.matches(root)] == [name]
        assert detect_layout(root) == name
        assert load_corpus(root).name == name


def test_layout_rejects_stray_audio(tmp_path: Path) -> None:
    root = _make(tmp_path / "rav", [*RAVDESS_FILES, "Actor_01/notes.wav"])
    with pytest.raises(DataError, match=r"files=1 .* ravdess naming convention: Actor_01/notes.wav"):
        ravdess.load(root)


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    root = _make(tmp_path / "rav", RAVDESS_FILES)
    _wav(root / "__MACOSX" / "Actor_01" / "._03-01-01-01-01-01-01.wav")
    _wav(root / "Actor_01" / "._junk.wav")
    assert len(ravdess.load(root)) == 4


# ----------------------------------------------------------------------------- folders

def test_folder_per_label(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    _make(root, ["Angry/a.wav", "Angry/take2/b.flac", "Fearful/c.ogg", "happy/d.wav", "loose.wav"])
    (root / "empty").mkdir()
    (root / "happy" / "readme.txt").write_text("not audio")
    assert folders.matches(root) and detect_layout(root) == "folders"
    c = load_corpus(root)
    assert c.name == "mine" and c.label_counts() == {"happy": 1, "angry": 2, "fear": 1}
    assert {u.speaker for u in c.items} == {"unknown"}
    assert all(u.path.is_absolute() and u.gender is None for u in c.items)


def test_folders_without_audio_is_not_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "x" / "angry").mkdir(parents=True)
    (tmp_path / "x" / "angry" / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"is not a recognised corpus: expected manifest.csv"):
        load_corpus(tmp_path / "x")


# ----------------------------------------------------------------------------- load_corpus

def test_load_corpus_missing_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"DATA_DIR=.*nope must be an existing folder"):
        load_corpus(tmp_path / "nope")
    f = tmp_path / "f.wav"
    _wav(f)
    with pytest.raises(DataError, match="must be a folder"):
        load_corpus(f)


def test_label_map_and_restrict(tmp_path: Path) -> None:
    root = _make(tmp_path / "rav", RAVDESS_FILES)
    c = load_corpus(root, label_map={"calm": "neutral", "surprise": None})
    assert c.label_counts() == {"neutral": 2, "fear": 1}
    c = load_corpus(root, labels=["fear", "neutral"])
    assert c.labels == ["neutral", "fear"] and len(c) == 2
    c = load_corpus(root, label_map=parse_label_map("calm=neutral,surprise="), labels=["neutral"])
    assert len(c) == 2
    with pytest.raises(DataError, match=r"labels=\['angyr'\] must be labels of corpus ravdess"):
        load_corpus(root, labels=["fear", "angyr"])
    with pytest.raises(DataError, match="no utterances left"):
        load_corpus(root, label_map={lab: None for lab in ("neutral", "fear", "surprise", "calm")})


def test_parse_label_map() -> None:
    assert parse_label_map("calm=neutral,surprise=,fear=fear") == {
        "calm": "neutral", "surprise": None, "fear": "fear"}
    assert parse_label_map(" a = b , ,") == {"a": "b"}
    assert parse_label_map("") == {}
    with pytest.raises(ConfigError, match="bad item 'calm'"):
        parse_label_map("calm")
    with pytest.raises(ConfigError, match="bad item '=x'"):
        parse_label_map("=x")
    with pytest.raises(ConfigError, match="'a' repeats"):
        parse_label_map("a=b,a=c")


def test_manifest_takes_precedence_and_speaker_folds(tmp_path: Path) -> None:
    root = _make(tmp_path / "rav", RAVDESS_FILES)
    _write_csv(root / "manifest.csv", [
        ["path", "label", "speaker"],
        ["Actor_01/03-01-01-01-01-01-01.wav", "custom", "s1"],
        ["Actor_02/03-01-06-02-02-02-02.wav", "custom", "s2"],
    ])
    c = load_corpus(root)
    assert c.name == "rav" and c.labels == ["custom"] and len(c) == 2
    folds = speaker_folds([u.speaker for u in c.items], 2)
    assert [f[2] for f in folds] == [["s1"], ["s2"]]


# ----------------------------------------------------------------------------- manifest

def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture
def mroot(tmp_path: Path) -> Path:
    root = tmp_path / "mycorpus"
    _make(root, ["a/1.wav", "a/2.wav", "b/3.flac"])
    return root


def test_manifest_loads_all_columns(mroot: Path) -> None:
    _write_csv(mroot / "manifest.csv", [
        ["path", "label", "speaker", "gender", "age", "note"],
        ["a/1.wav", "scream", "p1", "Female", "30", ""],
        ["a/2.wav", " angry ", "", "", "41", "loud"],
        ["b/3.flac", "angry", "p2", "male", "", "x"],
    ])
    c = load_manifest(mroot)
    assert c.name == "mycorpus" and c.root == mroot.resolve()
    assert [(u.path, u.label, u.speaker, u.gender, u.corpus, dict(u.extra)) for u in c.items] == [
        (mroot.resolve() / "a/1.wav", "scream", "p1", "female", "mycorpus", {"age": "30", "note": ""}),
        (mroot.resolve() / "a/2.wav", "angry", "unknown", None, "mycorpus", {"age": "41", "note": "loud"}),
        (mroot.resolve() / "b/3.flac", "angry", "p2", "male", "mycorpus", {"age": "", "note": "x"}),
    ]


def test_manifest_gender_optional_and_other_file(mroot: Path, tmp_path: Path) -> None:
    mf = _write_csv(tmp_path / "elsewhere.csv", [["path", "label", "speaker"], ["a/1.wav", "x", "p"]])
    c = load_manifest(mroot, mf)
    assert len(c) == 1 and c.items[0].gender is None and c.items[0].extra == {}


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([["path", "label"], ["a/1.wav", "x"]], r"manifest.csv: columns=\['path', 'label'\] must include speaker"),
        ([["path", "label", "speaker"], ["a/1.wav", "x", "p"], ["", "x", "p"]],
         r"manifest.csv line 3: path='' must not be empty"),
        ([["path", "label", "speaker"], ["a/1.wav", "  ", "p"]],
         r"manifest.csv line 2: label='' must not be empty \(path=a/1.wav\)"),
        ([["path", "label", "speaker"], ["../other/1.wav", "x", "p"]],
         r"manifest.csv line 2: path='../other/1.wav' must be relative and stay inside"),
        ([["path", "label", "speaker"], ["a/../../1.wav", "x", "p"]],
         r"line 2: path='a/../../1.wav' must be relative and stay inside"),
        ([["path", "label", "speaker"], ["/etc/passwd", "x", "p"]],
         r"line 2: path='/etc/passwd' must be relative and stay inside"),
        ([["path", "label", "speaker"], ["C:\\x.wav", "x", "p"]],
         r"line 2: path='C:\\\\x.wav' must be relative"),
        ([["path", "label", "speaker"], ["a/1.wav", "x", "p"], ["b/3.flac", "x", "p"], ["a/1.wav", "y", "q"]],
         r"line 4: path='a/1.wav' must be unique; it is already on line 2"),
        ([["path", "label", "speaker"], ["a/1.wav", "x", "p", "extra-cell"]],
         r"line 2: cells=4 must be 3"),
        ([["path", "label", "speaker"]], r"must list at least one file"),
    ],
)
def test_manifest_errors(mroot: Path, rows: list[list[str]], pattern: str) -> None:
    _write_csv(mroot / "manifest.csv", rows)
    with pytest.raises(DataError, match=pattern):
        load_manifest(mroot)


def test_manifest_missing_files_reported(mroot: Path) -> None:
    rows = [["path", "label", "speaker"], ["a/1.wav", "x", "p"]]
    rows += [[f"gone/{i}.wav", "x", "p"] for i in range(7)]
    _write_csv(mroot / "manifest.csv", rows)
    with pytest.raises(DataError) as ei:
        load_manifest(mroot)
    msg = str(ei.value)
    assert "missing_files=7 must be 0" in msg
    assert "gone/0.wav (line 3)" in msg and "gone/4.wav (line 7)" in msg
    assert "gone/5.wav" not in msg and msg.endswith(", ...")


def test_manifest_absent(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"manifest=.*must be an existing file"):
        load_manifest(tmp_path)


def test_write_manifest_round_trip(tmp_path: Path) -> None:
    root = _make(tmp_path / "rav", RAVDESS_FILES)
    c = ravdess.load(root)
    out = write_manifest(c, root / "manifest.csv")
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert header == "path,label,speaker,gender,channel,intensity,modality,repetition,statement"
    back = load_manifest(root)
    assert back.name == "rav"
    assert [(u.path, u.label, u.speaker, u.gender, dict(u.extra)) for u in back.items] == [
        (u.path, u.label, u.speaker, u.gender, dict(u.extra)) for u in c.items
    ]
    with pytest.raises(DataError, match="must lie under the manifest folder"):
        write_manifest(c, tmp_path / "sub" / "manifest.csv")


# ----------------------------------------------------------------------------- real corpora

def _real(name: str) -> Path:
    root = DATA / name
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"shared corpus {root} is absent (see shared/data/README.md)")
    return root


def _assert_layout_agrees_with_manifest(root: Path, layout: Corpus, extras: tuple[str, ...]) -> None:
    manifest = load_manifest(root)
    by_path = {u.path: u for u in layout.items}
    assert set(by_path) == {u.path for u in manifest.items}
    for m in manifest.items:
        u = by_path[m.path]
        assert (u.label, u.speaker, u.gender) == (m.label, m.speaker, m.gender), m.path
        for key in extras:
            assert u.extra[key] == m.extra[key], (m.path, key)


@pytest.mark.corpus
def test_real_ravdess() -> None:
    root = _real("ravdess")
    c = load_corpus(root)
    assert len(c) == 1440 and len(c.speakers) == 24
    assert c.label_counts() == {
        "neutral": 96, "calm": 192, "happy": 192, "sad": 192,
        "angry": 192, "fear": 192, "disgust": 192, "surprise": 192,
    }
    assert ravdess.matches(root) and detect_layout(root) == "manifest"
    _assert_layout_agrees_with_manifest(root, ravdess.load(root), ("intensity", "statement", "repetition"))


@pytest.mark.corpus
def test_real_tess() -> None:
    root = _real("tess")
    c = load_corpus(root)
    assert len(c) == 2798 and c.speakers == ["OAF", "YAF"]
    assert c.label_counts()["angry"] == 399 and c.label_counts()["surprise"] == 400
    assert tess.matches(root)
    _assert_layout_agrees_with_manifest(root, tess.load(root), ("word", "age"))
