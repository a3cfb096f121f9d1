"""Batch analysis into Parquet: the local engine (process pool), the Ray engine on a local Ray
instance (same rows), the incremental writer, the CLI and its errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import SR, harmonic, noise, tone
from vocalis.batch import BatchSpec, ParquetSink, find_audio, prob_column, run_batch, schema
from vocalis.batch.core import STAGE
from vocalis.bundle import load_bundle
from vocalis.cli import app
from vocalis.errors import ConfigError, DataError, DependencyError

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (extra 'batch')")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (extra 'batch')")

MAX_S = 3.0
runner = CliRunner()


def _write_inputs(root: Path) -> dict[str, Any]:
    """Clips at several rates and channel counts, a broken file, an empty one and one that is too long."""
    root.mkdir(parents=True, exist_ok=True)
    sf.write(root / "a_tone.wav", tone(220, 1.0), SR)
    sf.write(root / "b_voice_22k.flac", harmonic(180, 1.5, sr=22_050, vibrato=0.05), 22_050)
    sub = root / "sub"
    sub.mkdir()
    stereo = np.stack([harmonic(260, 1.2, sr=44_100), noise(1.2, sr=44_100, amp=0.05)], axis=1)
    sf.write(sub / "c_stereo_44k.wav", stereo, 44_100)
    sf.write(sub / "d_noise_8k.ogg", noise(2.0, sr=8_000, amp=0.2, seed=3), 8_000)
    sf.write(root / "e_too_long.wav", harmonic(140, MAX_S + 1.0), SR)
    (root / "f_broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x01garbage" * 50)
    (root / "g_empty.mp3").write_bytes(b"")
    sf.write(root / "h_silence.wav", np.zeros(SR, np.float32), SR)  # decodes, but holds nothing to label
    (root / "notes.txt").write_text("not audio, not picked up")
    (root / ".hidden.wav").write_bytes(b"skipped")
    return {"ok": {"a_tone.wav": 1.0, "b_voice_22k.flac": 1.5, "c_stereo_44k.wav": 1.2, "d_noise_8k.ogg": 2.0},
            "failed": {"e_too_long.wav": "max_duration=3s", "f_broken.wav": "f_broken.wav",
                       "g_empty.mp3": "empty", "h_silence.wav": "no audible sound"}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("batch") / "recordings"
    return root, _write_inputs(root)


@pytest.fixture(scope="module")
def local_run(inputs: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root, truth = inputs
    out = tmp_path_factory.mktemp("out") / "local.parquet"
    calls: list[tuple[str, int, int]] = []
    files = find_audio([root])
    summary = run_batch(files, out, BatchSpec(max_duration=MAX_S, batch_size=2), engine="local", workers=2,
                        progress=lambda s, d, t: calls.append((s, d, t)))
    return {"files": files, "out": out, "summary": summary, "table": pq.read_table(out), "calls": calls,
            "truth": truth}


def _by_name(table: Any) -> dict[str, dict[str, Any]]:
    return {Path(r["file"]).name: r for r in table.to_pylist()}


def test_find_audio_walks_folders_skips_hidden_and_non_audio(inputs: tuple[Path, dict[str, Any]]) -> None:
    root, truth = inputs
    files = find_audio([root, root / "a_tone.wav"])  # a file named twice is analysed once
    names = [Path(f).name for f in files]
    assert sorted(names) == sorted([*truth["ok"], *truth["failed"]])
    assert all(Path(f).is_absolute() for f in files)
    with pytest.raises(DataError, match=r"input='/no/such/dir' does not exist"):
        find_audio(["/no/such/dir"])


def test_find_audio_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(DataError, match="holds no audio files"):
        find_audio([tmp_path])
    with pytest.raises(DataError, match="must name at least one"):
        find_audio([])


def test_local_engine_writes_one_row_per_file(local_run: dict[str, Any]) -> None:
    t, truth, s = local_run["table"], local_run["truth"], local_run["summary"]
    labels = load_bundle().labels
    assert t.num_rows == len(truth["ok"]) + len(truth["failed"]) == len(local_run["files"])
    assert t.column("file").to_pylist() == local_run["files"]  # input order
    assert t.schema.names == ["file", "duration_s", "label", *[prob_column(x) for x in labels],
                              "valence", "arousal", "speech_detected", "voiced_s", "error"]
    assert json.loads(t.schema.metadata[b"vocalis.labels"]) == labels
    rows = _by_name(t)
    for name, dur in truth["ok"].items():
        r = rows[name]
        assert r["error"] is None
        assert r["duration_s"] == pytest.approx(dur, abs=1e-3)
        p = np.array([r[prob_column(x)] for x in labels])
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-5
        assert r["label"] == labels[int(np.argmax(p))]
        assert -1 <= r["valence"] <= 1 and -1 <= r["arousal"] <= 1
    for name, needle in truth["failed"].items():
        r = rows[name]
        assert needle in r["error"]
        assert r["label"] is None and r[prob_column(labels[0])] is None
        assert r["duration_s"] == (1.0 if name == "h_silence.wav" else None)  # decoded, so its length is known
    assert (s.files, s.ok, s.failed, s.workers) == (8, 4, 4, 2)
    assert s.audio_s == pytest.approx(sum(truth["ok"].values()), abs=1e-2)
    assert s.files_per_s > 0 and s.audio_hours_per_hour > 0
    assert {Path(e["file"]).name for e in s.errors} == set(truth["failed"])


def test_local_rows_equal_vocalis_predict(local_run: dict[str, Any]) -> None:
    """The batch row of a file is what ``vocalis predict`` says about it (same decoder, features, model)."""
    row = _by_name(local_run["table"])["b_voice_22k.flac"]
    pred = load_bundle().predict_file(row["file"])
    assert row["label"] == pred.label
    for lab, p in pred.probabilities.items():
        assert row[prob_column(lab)] == pytest.approx(p, abs=1e-5)
    assert (row["valence"], row["arousal"]) == pytest.approx((pred.valence, pred.arousal), abs=1e-5)
    assert pred.speech is not None
    heard = pred.speech.detected
    assert (row["speech_detected"], row["voiced_s"]) == (heard, None if heard is None else pred.speech.voiced_s)


def test_progress_reports_every_file(local_run: dict[str, Any]) -> None:
    calls, n = local_run["calls"], len(local_run["files"])
    assert calls[0] == (STAGE, 0, n) and calls[-1] == (STAGE, n, n)
    done = [d for _, d, _ in calls]
    assert done == sorted(done)


def test_parquet_sink_writes_row_groups_and_replaces_only_on_success(tmp_path: Path) -> None:
    sch = schema(["calm", "angry"])
    rows = {k: [None, None] for k in sch.names} | {"file": ["a", "b"], "error": ["x", "y"]}
    out = tmp_path / "o.parquet"
    with ParquetSink(out, sch, row_group_size=4) as sink:
        for _ in range(5):
            sink.write(pa.Table.from_pydict(rows, schema=sch))
        assert not out.exists()  # written under a temporary name until closed
    f = pq.ParquetFile(out)
    assert f.metadata.num_rows == 10 and f.metadata.num_row_groups == 3
    before = out.read_bytes()
    with pytest.raises(RuntimeError), ParquetSink(out, sch, row_group_size=4) as sink:
        sink.write(pa.Table.from_pydict(rows, schema=sch))
        raise RuntimeError("interrupted")
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]


def _close(a: Any, b: Any, atol: float = 1e-5) -> bool:
    return a == b if not isinstance(a, float) or not isinstance(b, float) else math.isclose(a, b, abs_tol=atol)


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray = pytest.importorskip("ray", reason="ray is not installed (extra 'ray': pip install 'vocalis[ray]')")
    pytest.importorskip("ray.data", reason="ray[data] is not installed (extra 'ray')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")
def test_ray_engine_gives_the_local_results(local_run: dict[str, Any], local_ray: Any, tmp_path: Path) -> None:
    spec = BatchSpec(max_duration=MAX_S, batch_size=2)
    out = tmp_path / "ray.parquet"
    s = run_batch(local_run["files"], out, spec, engine="ray", workers=2)
    assert local_ray.is_initialized()  # a Ray started by the caller is left running
    got, want = pq.read_table(out), local_run["table"]
    assert got.schema.names == want.schema.names
    assert got.column("file").to_pylist() == local_run["files"]  # order preserved
    for g, w in zip(got.to_pylist(), want.to_pylist()):
        assert all(_close(g[k], w[k]) for k in w), (g, w)
    assert (s.engine, s.files, s.ok, s.failed, s.workers) == ("ray", 8, 4, 4, 2)
    # a folder target: Ray's write_parquet, part files that read back as the same table
    folder = tmp_path / "parts"
    s2 = run_batch(local_run["files"], f"{folder}/", spec, engine="ray", workers=2)
    parts = pq.read_table(folder)
    assert (s2.files, s2.failed) == (8, 4) and parts.num_rows == 8
    byname = _by_name(parts)
    for name, w in _by_name(want).items():
        assert all(_close(byname[name][k], w[k]) for k in w)
    with pytest.raises(ConfigError, match="not empty"):
        run_batch(local_run["files"], f"{folder}/", spec, engine="ray")


def test_cli_batch_end_to_end(inputs: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, _ = inputs
    out = tmp_path / "res" / "cli.parquet"
    res = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1", "--max-duration", str(MAX_S),
                              "--quiet", "--json"])
    assert res.exit_code == 1, res.output  # some files failed; their rows say why
    summary = json.loads(res.stdout)
    assert (summary["files"], summary["ok"], summary["failed"]) == (8, 4, 4)
    assert summary["files_per_s"] > 0 and summary["audio_hours_per_hour"] > 0
    assert "f_broken.wav" in res.stderr and res.stderr.startswith("error: ")
    t = pq.read_table(out)
    assert t.num_rows == 8 and sum(e is not None for e in t.column("error").to_pylist()) == 4
    good = tmp_path / "good"
    good.mkdir()
    sf.write(good / "x.wav", harmonic(200, 1.0), SR)
    res = runner.invoke(app, ["batch", str(good / "x.wav"), "-o", str(tmp_path / "g.parquet"), "-q"])
    assert res.exit_code == 0, res.output
    assert "1 of 1 files analysed (0 failed)" in res.stdout and "audio-hours/hour" in res.stdout


@pytest.mark.parametrize(("args", "error", "message"), [
    (["--engine", "spark"], ConfigError, "engine='spark' must be one of 'local', 'ray'"),
    (["--ray-address", "auto"], ConfigError, "ray_address='auto' needs engine='ray'"),
    (["--max-duration", "0"], ConfigError, "max_duration=0.0 must be a positive number"),
    (["--workers", "-1"], ConfigError, "workers=-1 must be >= 0"),
])
def test_cli_option_errors_name_value_and_rule(tmp_path: Path, args: list[str], error: type, message: str) -> None:
    sf.write(tmp_path / "x.wav", tone(300, 0.5), SR)
    res = runner.invoke(app, ["batch", str(tmp_path / "x.wav"), "--out", str(tmp_path / "o.parquet"), "-q", *args])
    assert isinstance(res.exception, error) and message in str(res.exception)


def test_local_engine_refuses_a_folder_as_out(tmp_path: Path) -> None:
    sf.write(tmp_path / "x.wav", tone(300, 0.5), SR)
    with pytest.raises(ConfigError, match="is a folder"):
        run_batch([str(tmp_path / "x.wav")], tmp_path, BatchSpec(), engine="local", workers=1)


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(DependencyError, match=r"pip install 'vocalis\[ray\]'"):
        run_batch([str(tmp_path / "x.wav")], tmp_path / "o.parquet", engine="ray")


def test_cli_error_is_clean_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    r = subprocess.run([sys.executable, "-m", "vocalis", "batch", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "o.parquet")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: input=") and "does not exist" in r.stderr
