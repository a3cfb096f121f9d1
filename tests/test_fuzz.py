"""A short, seeded atheris pass over the decoder (``fuzz/fuzz_decode.py``); the long run is in the README."""

from __future__ import annotations

import importlib.util
import resource
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_decode.py"


@pytest.mark.timeout(180)
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris; it is in the 'dev' extra)")
def test_decoder_survives_a_short_fuzzing_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    # libFuzzer checks the peak RSS (ru_maxrss), and a child started from this process inherits this
    # process's peak through vfork + exec (after the model-loading tests, well over 2 GB): the limit
    # is 2 GB on top of it, as the README's stand-alone command (-rss_limit_mb=2048) has
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    cmd = [sys.executable, str(TARGET), "-seed=1", "-runs=4000", "-max_total_time=30", "-timeout=20",
           f"-rss_limit_mb={inherited_mb + 2048}", "-malloc_limit_mb=2048", f"-artifact_prefix={tmp_path}/",
           str(corpus)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=170)
    tail = "\n".join(line for line in r.stderr.splitlines() if not line.startswith(("Note:", "Warning:", "[src/")))
    assert r.returncode == 0, tail[-3000:]
    assert "Done" in r.stderr and len(list(corpus.iterdir())) >= 7  # the seeds, plus what it kept
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))


def test_seed_corpus_decodes(tmp_path: Path) -> None:
    """Every seed is a valid file of its container (so the fuzzer starts from real structure)."""
    sys.path.insert(0, str(TARGET.parent))
    try:
        from fuzz_decode import check_one, make_seed_corpus
    finally:
        sys.path.remove(str(TARGET.parent))
    from vocalis.audio.io import load_audio

    seeds = make_seed_corpus(tmp_path)
    assert {p.suffix for p in seeds} == {".wav", ".flac", ".ogg", ".webm", ".opus", ".mp3"}
    for p in seeds:
        assert load_audio(p).size > 3000, p
        check_one(p.read_bytes())
