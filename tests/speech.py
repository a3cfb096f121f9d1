"""Synthetic speech with known words (Debian espeak-ng), for tests of transcripts and triage."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vocalis.audio.io import load_audio


def say(text: str, tmp_path: Path, name: str = "say", *, speed: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng as float32 16 kHz mono; skips the test where espeak-ng is absent."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (scripts/speech.sh installs the Debian package)")
    out = tmp_path / f"{name}.wav"
    subprocess.run([exe, "-s", str(speed), "-w", str(out), text], check=True, capture_output=True, timeout=60)
    return load_audio(out)
