"""download_corpus against a local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vocalis.corpora import load_corpus
from vocalis.corpora.download import CORPORA, download_corpus
from vocalis.errors import DataError

RAV = "Audio_Speech_Actors_01-24/Actor_03/03-01-05-02-01-01-03.wav"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _wav_bytes() -> bytes:
    buf = io.BytesIO()
    t = np.arange(3200) / 16_000
    sf.write(buf, 0.1 * np.sin(2 * np.pi * 440 * t), 16_000, format="WAV")
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_download_zip_and_load(served: tuple[Path, str], tmp_path: Path) -> None:
    www, base = served
    archive = _zip(www / "rav.zip", {RAV: _wav_bytes()})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    seen: list[tuple[int, int | None]] = []
    data = tmp_path / "data"
    (data / "tess").mkdir(parents=True)  # other corpora may live beside it
    dest = data / "ravdess"
    out = download_corpus(
        "ravdess", data, url=f"{base}/rav.zip", sha256=digest.upper(),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert out == dest.resolve() / "Audio_Speech_Actors_01-24"  # single wrapper folder unwrapped
    c = load_corpus(out)
    assert c.name == "ravdess" and len(c) == 1
    u = c.items[0]
    assert (u.label, u.speaker, u.gender) == ("angry", "03", "male")
    assert seen[0] == (0, archive.stat().st_size) and seen[-1][0] == archive.stat().st_size
    assert [p.name for p in dest.iterdir()] == ["Audio_Speech_Actors_01-24"]  # temp file gone


def test_download_tar(served: tuple[Path, str], tmp_path: Path) -> None:
    www, base = served
    data = _wav_bytes()
    with tarfile.open(www / "emo.tar.gz", "w:gz") as tf:
        for name in ("wav/03a01Fa.wav", "wav/08b02La.wav"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = download_corpus("emodb", tmp_path / "data", url=f"{base}/emo.tar.gz")
    assert load_corpus(out).label_counts() == {"happy": 1, "boredom": 1}


@pytest.mark.parametrize("member", ["../evil.wav", "/abs/evil.wav", "a/../../evil.wav"])
def test_zip_slip_is_refused(served: tuple[Path, str], tmp_path: Path, member: str) -> None:
    www, base = served
    _zip(www / "bad.zip", {RAV: _wav_bytes(), member: b"x"})
    with pytest.raises(DataError, match=r"archive member=.*must stay inside"):
        download_corpus("ravdess", tmp_path / "d", url=f"{base}/bad.zip")
    assert not (tmp_path / "d" / "evil.wav").exists() and not (tmp_path / "evil.wav").exists()
    assert not (tmp_path / "d" / "ravdess").exists()


def test_tar_symlink_is_refused(served: tuple[Path, str], tmp_path: Path) -> None:
    www, base = served
    with tarfile.open(www / "link.tar", "w") as tf:
        info = tarfile.TarInfo("x/link.wav")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="must be a regular file or folder"):
        download_corpus("ravdess", tmp_path / "d", url=f"{base}/link.tar")


def test_sha256_mismatch(served: tuple[Path, str], tmp_path: Path) -> None:
    www, base = served
    _zip(www / "rav.zip", {RAV: _wav_bytes()})
    dest = tmp_path / "d" / "ravdess"
    dest.mkdir(parents=True)
    with pytest.raises(DataError, match=r"sha256=[0-9a-f]{64} of http.* must be 0{64}: corrupted"):
        download_corpus("ravdess", tmp_path / "d", url=f"{base}/rav.zip", sha256="0" * 64)
    assert dest.is_dir() and not any(dest.iterdir())  # pre-existing empty dest kept, emptied


def test_http_404(served: tuple[Path, str], tmp_path: Path) -> None:
    _, base = served
    with pytest.raises(DataError, match=r"url=http://127\.0\.0\.1:\d+/missing.zip could not be downloaded: HTTP 404"):
        download_corpus("ravdess", tmp_path / "d", url=f"{base}/missing.zip")


def test_unreachable_host(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"url=http://127\.0\.0\.1:9/x.zip could not be downloaded"):
        download_corpus("ravdess", tmp_path / "d", url="http://127.0.0.1:9/x.zip", timeout=2)


def test_not_an_archive(served: tuple[Path, str], tmp_path: Path) -> None:
    www, base = served
    (www / "page.html").write_text("<html></html>")
    with pytest.raises(DataError, match="must be a zip or tar archive"):
        download_corpus("ravdess", tmp_path / "d", url=f"{base}/page.html")


def test_names_and_manual_sources(tmp_path: Path) -> None:
    assert set(CORPORA) == {"ravdess", "tess", "cremad", "savee", "emodb"}
    assert CORPORA["ravdess"].url == "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip"
    assert all(s.licence and s.citation for s in CORPORA.values())
    with pytest.raises(DataError, match=r"corpus='iemocap' must be one of: cremad, emodb, ravdess, savee, tess"):
        download_corpus("iemocap", tmp_path / "d")
    with pytest.raises(DataError, match=r"corpus=savee cannot be downloaded automatically: .*register"):
        download_corpus("savee", tmp_path / "d")
    with pytest.raises(DataError, match=r"corpus=cremad cannot be downloaded automatically: .*Git LFS"):
        download_corpus("CREMA-D", tmp_path / "d")


def test_dest_must_be_empty(tmp_path: Path) -> None:
    dest = tmp_path / "d" / "ravdess"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match=r"dest=.*ravdess must be an empty or new folder"):
        download_corpus("ravdess", tmp_path / "d", url="http://127.0.0.1:9/x.zip")
    assert (dest / "keep.txt").read_text() == "mine"
