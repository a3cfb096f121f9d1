"""The bundled default model: present, verified, runs on every format, and is honest about its metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, corpus_dir, harmonic, noise
from vocalis.bundle import default_model_path, load_bundle
from vocalis.cli import app
from vocalis.labels import EMOTIONS


def test_default_bundle_ships_and_verifies() -> None:
    p = default_model_path()
    assert p.is_file(), "src/vocalis/data/default.vocalis must ship with the package"
    assert p.stat().st_size < 20 * 1024 * 1024
    b = load_bundle()
    assert b.labels == list(EMOTIONS)
    cv = b.manifest.metrics["cv"]
    assert cv["split"].startswith("speaker-independent")
    assert sorted(b.manifest.training["corpora"]) == ["ravdess", "tess"]
    assert 0 < b.manifest.calibration["temperature"] < 20


@pytest.mark.parametrize("signal", [harmonic(180, 1.5, vibrato=0.05), noise(1.0), harmonic(300, 0.1)],
                         ids=["voice-like", "noise", "100ms"])
def test_default_model_gives_valid_predictions_on_any_signal(signal: np.ndarray) -> None:
    pred = load_bundle().predict(signal, SR)
    assert pred.label in EMOTIONS
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert all(0 <= p <= 1 for p in pred.probabilities.values())


@pytest.mark.parametrize(("signal", "level"), [(np.zeros(SR, np.float32), "-inf"),
                                               (np.full(SR, 10 ** (-70 / 20), np.float32), "-70")],
                         ids=["digital silence", "-70 dBFS"])
def test_silence_is_an_error_not_an_emotion(signal: np.ndarray, level: str, tmp_path: Path) -> None:
    """It used to say 'calm 0.88' for digital silence: a model that never heard silence guesses."""
    from vocalis.errors import AudioError

    with pytest.raises(AudioError, match=f"no audible sound \\(loudest 32 ms at {level} dBFS\\); speech must reach -60"):
        load_bundle().predict(signal, SR)
    quiet = np.concatenate([signal, 10 ** (-40 / 20) * harmonic(200, 0.1, amp=1.0)])  # one audible moment
    assert load_bundle().predict(quiet, SR).label in EMOTIONS
    sf.write(tmp_path / "silence.wav", signal, SR)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "silence.wav")])
    assert res.exit_code == 1 and "silence.wav: no audible sound" in res.output


def test_default_model_other_sample_rates_agree(tmp_path: Path) -> None:
    import soxr

    x = harmonic(200, 2.0, vibrato=0.04)
    b = load_bundle()
    p16 = np.array(list(b.predict(x, SR).probabilities.values()))
    x44 = soxr.resample(x, SR, 44_100).astype(np.float32)
    p44 = np.array(list(b.predict(x44, 44_100).probabilities.values()))
    assert np.abs(p16 - p44).max() < 0.1


@pytest.mark.corpus
def test_default_model_recognises_held_in_corpus_clips() -> None:
    """Sanity on real speech: strongly acted RAVDESS angry/sad clips (seen in training)."""
    root = corpus_dir("ravdess")
    b = load_bundle()
    clips = sorted((root / "Actor_01").glob("03-01-05-02-*.flac"))  # angry, strong intensity
    preds = [b.predict_file(c) for c in clips]
    assert sum(p.label == "angry" for p in preds) >= len(clips) // 2
    assert np.mean([p.arousal for p in preds]) > 0.2


@pytest.mark.corpus
def test_screams_have_higher_arousal_than_calm_calls() -> None:
    """Out-of-domain check on real phone audio: screamed calls for help read as more aroused."""
    import csv

    root = corpus_dir("screams")
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    b = load_bundle()
    pick = {s: [r for r in rows if r["subset"] == s][:12] for s in ("scream_call", "calm_call")}
    arousal = {s: np.mean([b.predict_file(root / r["path"]).arousal for r in rs]) for s, rs in pick.items()}
    assert arousal["scream_call"] > arousal["calm_call"]


def test_predict_cli_on_browser_formats(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.test_audio_io import _encode_av

    x = harmonic(220, 1.2, vibrato=0.05)
    files = [tmp_path / "a.wav", tmp_path / "b.flac"]
    sf.write(files[0], x, SR)
    sf.write(files[1], x, SR)
    files.append(_encode_av(tmp_path / "c.webm", np.repeat(x, 3), 48_000, "webm", "libopus"))
    files.append(_encode_av(tmp_path / "d.ogg", np.repeat(x, 3), 48_000, "ogg", "libopus"))
    files.append(_encode_av(tmp_path / "e.mp3", np.repeat(x, 3), 48_000, "mp3", "libmp3lame"))
    r = subprocess.run([sys.executable, "-m", "vocalis", "predict", *map(str, files), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["file"] for o in out] == [str(f) for f in files]
    assert all(o["label"] in EMOTIONS for o in out)


def _silero() -> None:
    from vocalis.audio.vad import silero_onnx_path

    if silero_onnx_path() is None:
        pytest.skip("silero-vad is not installed (pip install --no-deps silero-vad): no speech model")


@pytest.mark.parametrize("signal", [noise(3.0, amp=10 ** (-50 / 20)), noise(3.0, amp=0.1),
                                    harmonic(440, 3.0, n=1), harmonic(180, 3.0, vibrato=0.05)],
                         ids=["faint noise", "loud noise", "tone", "harmonic"])
def test_a_clip_without_speech_is_labelled_but_marked_as_a_guess(signal: np.ndarray, tmp_path: Path) -> None:
    """It used to say 'fear 0.65' for white noise and nothing else: a model labels whatever it gets."""
    _silero()
    pred = load_bundle().predict(signal, SR)
    assert pred.label in EMOTIONS
    assert pred.speech is not None and pred.speech.model == "silero"
    assert pred.speech.detected is False and pred.speech.peak < 0.5 and pred.speech.voiced_s == 0.0
    assert pred.to_dict()["speech"] == {"detected": False, "peak": pred.speech.peak, "voiced_s": 0.0,
                                        "model": "silero"}
    assert load_bundle().predict(signal, SR, speech=False).speech is None
    sf.write(tmp_path / "n.wav", signal, SR)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "n.wav")])
    assert res.exit_code == 0
    assert f"[no speech heard (voice activity peak {pred.speech.peak:.2f} < 0.5, silero): the label is a guess]" \
        in res.output


def test_speech_is_heard_in_every_sampled_corpus_clip(tmp_path: Path) -> None:
    """Acted speech (RAVDESS, TESS) is never marked as a guess; the CLI line has no note."""
    _silero()
    import csv

    from vocalis.audio.io import load_audio

    b = load_bundle()
    files = []
    for name in ("ravdess", "tess"):
        root = corpus_dir(name)
        rows = list(csv.DictReader((root / "manifest.csv").open()))
        files += [root / r["path"] for r in rows[:: max(1, len(rows) // 12)]]
    for f in files:
        s = b.predict(load_audio(f, SR), SR).speech
        assert s is not None and s.detected is True and s.voiced_s > 0.3, (f, s)
    res = CliRunner().invoke(app, ["predict", str(files[0]), "--json"])
    assert res.exit_code == 0 and '"speech": {"detected": true' in res.output
    res = CliRunner().invoke(app, ["predict", str(files[0])])
    assert res.exit_code == 0 and "no speech" not in res.output


def test_speech_presence_rules() -> None:
    from vocalis.audio.vad import speech_presence
    from vocalis.errors import AudioError

    # the energy fallback hears any loud sound as voice: it cannot say whether speech was heard
    s = speech_presence(noise(1.0), SR, vad="energy")
    assert s.model == "energy" and s.detected is None and "cannot tell" in s.describe()
    assert s.voiced_s > 0 and s.voiced_s_if_known is None  # stores keep no voiced seconds it cannot vouch for
    with pytest.raises(AudioError, match="sample_rate=8000 must be 16000"):
        speech_presence(noise(1.0, sr=8000), 8000)
    _silero()
    short = speech_presence(harmonic(200, 0.02), SR)  # under one 32 ms frame: still scored
    assert short.model == "silero" and 0.0 <= short.peak <= 1.0 and short.voiced_s_if_known == short.voiced_s


def test_without_silero_a_label_is_not_called_a_guess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The energy fallback hears any loud sound as voice: it cannot say a clip has no speech, so the
    CLI adds no note and the JSON says ``detected: null``."""
    import vocalis.audio.vad as vad

    monkeypatch.setattr(vad, "silero_onnx_path", lambda: None)  # as if silero-vad were not installed
    sf.write(tmp_path / "n.wav", noise(1.0), SR)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "n.wav")])
    assert res.exit_code == 0 and "guess" not in res.output, res.output
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "n.wav"), "--json"])
    assert '"speech": {"detected": null' in res.output and '"model": "energy"' in res.output, res.output
