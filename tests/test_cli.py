"""The CLI contract: JSON shapes, exit codes, clean errors (no tracebacks), help for every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, harmonic, make_synthetic_corpus
from vocalis.cli import app

runner = CliRunner()


def _commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    out: list[list[str]] = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        if sub:
            out += [[name, s] for s in sub]
        else:
            out.append([name])
    return out


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c))
def test_every_command_has_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output and len(res.output) > 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = make_synthetic_corpus(tmp_path_factory.mktemp("c"))
    out = tmp_path_factory.mktemp("m") / "tiny.vocalis"
    res = runner.invoke(app, ["train", str(root), "--out", str(out), "--recipe", "classic-logreg", "--cv", "4",
                              "--no-cache", "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["labels"] == ["calm", "angry", "fear"]
    assert "speaker-independent" in summary["metrics"]["cv"]["split"]
    return root, out


def test_predict_json_contract(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, model = trained
    clips = []
    for i, f0 in enumerate([110, 250]):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, harmonic(f0, 0.8), SR)
        clips.append(str(p))
    res = runner.invoke(app, ["predict", *clips, "--model", str(model), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [d["file"] for d in lines] == clips
    for d in lines:
        assert set(d) == {"file", "label", "probabilities", "valence", "arousal", "speech"}
        assert set(d["speech"]) == {"detected", "peak", "voiced_s", "model"}
        assert sum(d["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert d["label"] == max(d["probabilities"], key=d["probabilities"].get)
        assert -1 <= d["valence"] <= 1 and -1 <= d["arousal"] <= 1


def test_evaluate_and_cv_json(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, model = trained
    res = runner.invoke(app, ["evaluate", "--model", str(model), str(root), "--json", "--no-cache",
                              "--plot", str(tmp_path / "cm.png")])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert {"n", "wa", "ua", "macro_f1", "labels", "confusion"} <= set(d)
    assert np.asarray(d["confusion"]).sum() == d["n"]
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert d["held_out"] is False and "not held out" in d["split"]  # the model was trained on this corpus
    assert "warning: not held out" in res.stderr
    res = runner.invoke(app, ["cv", str(root), "--folds", "2", "--by", "speaker", "--recipe", "classic-logreg",
                              "--json", "--no-cache"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert len(d["folds"]) == 2 and all(set(f) >= {"test_speakers", "wa", "ua"} for f in d["folds"])
    assert d["wa"] == pytest.approx(np.mean([f["wa"] for f in d["folds"]]), abs=1e-3)


def test_restrict_labels(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, model = trained
    res = runner.invoke(app, ["evaluate", "--model", str(model), str(root), "--labels", "calm,angry", "--json",
                              "--no-cache"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["labels"] == ["calm", "angry", "fear"]
    res = runner.invoke(app, ["evaluate", "--model", str(model), str(root), "--labels", "calm,angry",
                              "--restrict-labels", "--json", "--no-cache"])
    d = json.loads(res.stdout)
    assert d["labels"] == ["calm", "angry"] and d["restricted"] is True


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vocalis", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,needle,code", [
    # 1: an input of a many-input command failed (the others would still be processed)
    (["predict", "/no/such.wav"], "not found", 1),
    (["predict", "/tmp"], "is a folder, not an audio file (for a folder of recordings use 'vocalis batch", 1),
    # 2: the command cannot run at all
    (["evaluate", "/no/such/dir"], "/no/such/dir", 2),
    (["predict", "x.wav", "--model", "/no/model.vocalis"], "not found", 2),
    (["cv", ".", "--recipe", "nope"], "recipe='nope'", 2),
])
def test_errors_are_clean_messages(args: list[str], needle: str, code: int) -> None:
    """The exit codes README.md documents: 1 some inputs failed, 2 the command could not run."""
    r = _run(*args)
    assert r.returncode == code
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and needle in r.stderr


def test_one_bad_file_does_not_stop_the_others(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, model = trained
    good = tmp_path / "g.wav"
    sf.write(good, harmonic(150, 0.5), SR)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"garbage" * 100)
    r = _run("predict", str(bad), str(good), "--model", str(model), "--json")
    assert r.returncode == 1
    assert "b.wav" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["file"] == str(good)


def test_monitor_file_json_lines_have_type_and_t(tmp_path: Path) -> None:
    from tests.conftest import noise

    p = tmp_path / "calm.wav"
    sf.write(p, np.concatenate([harmonic(150, 2.0, amp=0.1), noise(2.0, amp=0.01)]), SR)
    r = _run("monitor", "--file", str(p), "--speed", "0", "--json", "--no-emotion")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines and all({"type", "t"} <= set(d) for d in lines)
    windows = [d for d in lines if d["type"] == "window"]
    assert [d["t"] for d in windows] == sorted(d["t"] for d in windows)
    assert windows[0]["t"] == pytest.approx(2.0)
    assert not any(d["type"] == "alert" for d in lines)


def test_monitor_level_gain_turns_a_hot_microphone_down(tmp_path: Path) -> None:
    """--level-gain: once 10 s of voice are heard, speech at -6 dBFS reaches the scream detector at -18."""
    from tests.speech import say
    from vocalis.danger.train import hot_mic

    speech = say("I am reading the news out loud to my friend in the kitchen. " * 4, tmp_path)
    p = tmp_path / "hot.wav"
    sf.write(p, hot_mic(speech, -6.0), SR)
    gains = {}
    for flag in ("--level-gain", "--no-level-gain"):
        r = _run("monitor", "--file", str(p), "--speed", "0", "--json", "--no-emotion", flag)
        assert r.returncode == 0, r.stderr
        gains[flag] = [d["gain_db"] for d in map(json.loads, r.stdout.splitlines()) if d["type"] == "window"]
    assert set(gains["--no-level-gain"]) == {0.0}
    assert gains["--level-gain"][0] == 0.0  # nothing remembered yet
    assert -14.0 < gains["--level-gain"][-1] < -10.0


def test_monitor_needs_exactly_one_source() -> None:
    r = _run("monitor")
    assert r.returncode == 2 and "exactly one of --file F or --mic" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["predict", "x.wav", "--max-duration", "0"], "must be a finite number of seconds > 0"),
    (["predict", "x.wav", "--max-duration", "nan"], "must be a finite number of seconds > 0"),
    (["mood", "x.wav", "--user", "ann", "--max-duration", "-1"], "must be a finite number of seconds > 0"),
    (["train", ".", "--out", "m.vocalis", "--cv", "1"], ">= 2 folds (or 0 to skip)"),
    (["evaluate", ".", "--plot", "."], "is a folder"),
    (["history", "--user", "ann", "--plot", "/dev/null/trend.png"], "is not a writable folder"),
])
def test_bad_option_values_are_usage_errors_before_any_work(args: list[str], needle: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.replace("│", " ").split())  # the usage-error box wraps lines
    assert needle in text, res.output


def test_file_system_errors_are_clean_messages(tmp_path: Path) -> None:
    clip = tmp_path / "a.wav"
    sf.write(clip, harmonic(200, 1.0), SR)
    r = _run("batch", str(clip), "--out", "/dev/null/x.parquet")  # a path under a file
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: path=") and "cannot be used" in r.stderr
    r = _run("batch", str(clip), "--out", str(tmp_path / "outdir") + "/")  # a folder: ray only
    assert r.returncode == 2 and "is a folder" in r.stderr and not (tmp_path / "outdir").exists(), r.stderr
    r = _run("triage", str(clip), "--out", str(clip), "--no-transcript")  # an existing file as the report folder
    assert r.returncode == 2 and "Traceback" not in r.stderr and "must be a folder" in r.stderr, r.stderr
    r = _run("triage", str(clip), "--out", str(tmp_path / "rep"), "--asr-model", "huge")
    assert r.returncode == 2 and "model='huge' must be" in r.stderr and "tiny.en" in r.stderr, r.stderr
    assert not (tmp_path / "rep" / "report.json").exists()  # nothing analysed, no empty report


@pytest.mark.parametrize(("env", "needles"), [
    ({"VOCALIS_RETENTION_DAYS": "0", "VOCALIS_STREAM_HOT_MIC_WARN_DBFS": "5"},
     ["VOCALIS_RETENTION_DAYS='0': Input should be greater than or equal to 1",
      "VOCALIS_STREAM_HOT_MIC_WARN_DBFS='5': Input should be less than or equal to 0"]),
    ({"VOCALIS_STREAM_SCREAM_CONFIRM_MODEL_PATH": "/x.vocalis"}, ["needs scream_model_path"]),
])
def test_serve_refuses_a_bad_environment_with_the_variable_and_the_rule(
        tmp_path: Path, env: dict[str, str], needles: list[str]) -> None:
    import os

    r = subprocess.run([sys.executable, "-m", "vocalis", "serve", "--port", "1"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "VOCALIS_DATA_DIR": str(tmp_path), **env})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr
