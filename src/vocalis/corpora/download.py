"""Fetch public emotional-speech corpora from their official distributors.

**Licences: read them before use.** RAVDESS (CC BY-NC-SA 4.0) and TESS (CC BY-NC-ND 4.0)
are **non-commercial**; TESS also forbids derivatives. EmoDB has no explicit open licence
(free for research). SAVEE is distributed only after registration. CREMA-D is under the
Open Database License. Vocalis does not redistribute any corpus and never bundles audio:
this module only downloads from the official URL to a folder you choose, and cites the
source in :data:`CORPORA` so results can be attributed.

Only the standard library is used (``urllib``, ``zipfile``, ``tarfile``). Archives are
extracted safely: a member that is absolute, climbs out with ``..``, is a link or a device
is rejected before anything is written. The library prints nothing; pass ``progress`` to
show a progress bar.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vocalis.errors import DataError

__all__ = ["CORPORA", "Source", "download_corpus"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where a corpus comes from and under which terms.

    ``direct`` is False when ``url`` is a landing page (registration, Git LFS), not an
    archive; :func:`download_corpus` then raises with ``note`` unless given a ``url``.
    """

    name: str
    url: str
    licence: str
    citation: str
    sha256: str | None = None
    size: int | None = None
    direct: bool = True
    note: str = ""


CORPORA: dict[str, Source] = {
    "ravdess": Source(
        name="ravdess",
        url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip",
        licence="CC BY-NC-SA 4.0 (non-commercial, share-alike)",
        citation=(
            "Livingstone SR, Russo FA (2018). The Ryerson Audio-Visual Database of Emotional "
            "Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391. doi:10.5281/zenodo.1188976"
        ),
        note="Speech, audio-only part: 1440 files, Actor_01 ... Actor_24.",
    ),
    "tess": Source(
        name="tess",
        # Dataverse "download all files of a dataset as one zip" access API.
        url=(
            "https://borealisdata.ca/api/access/dataset/:persistentId/"
            "?persistentId=doi:10.5683/SP2/E8H2MF"
        ),
        licence="CC BY-NC-ND 4.0 (non-commercial, no derivatives)",
        citation=(
            "Dupuis K, Pichora-Fuller MK (2010). Toronto Emotional Speech Set (TESS). "
            "University of Toronto, Psychology Department. doi:10.5683/SP2/E8H2MF"
        ),
        note=(
            "Borealis (Scholars Portal Dataverse) zips a whole dataset on request; if the "
            "server refuses (size limit), download the files from "
            "https://doi.org/10.5683/SP2/E8H2MF and point Vocalis at the folder."
        ),
    ),
    "cremad": Source(
        name="cremad",
        url="https://github.com/CheyneyComputerScience/CREMA-D",
        licence="Open Database License 1.0 / Database Contents License 1.0",
        citation=(
            "Cao H, Cooper DG, Keutmann MK, Gur RC, Nenkova A, Verma R (2014). CREMA-D: "
            "Crowd-sourced Emotional Multimodal Actors Dataset. IEEE Transactions on "
            "Affective Computing 5(4): 377-390."
        ),
        direct=False,
        note=(
            "AudioWAV/ in the official repository is stored with Git LFS, so GitHub's zip "
            "archive holds only LFS pointers. Run `git lfs install && git clone "
            "https://github.com/CheyneyComputerScience/CREMA-D` and use CREMA-D/AudioWAV, or "
            "pass url= with an archive of the WAV files."
        ),
    ),
    "savee": Source(
        name="savee",
        url="http://kahlan.eps.surrey.ac.uk/savee/",
        licence="Free for research after registration; not redistributable",
        citation=(
            "Haq S, Jackson PJB (2009). Speaker-dependent audio-visual emotion recognition. "
            "Proc. AVSP 2009, 53-58. Surrey Audio-Visual Expressed Emotion (SAVEE) database."
        ),
        direct=False,
        note=(
            "SAVEE is distributed only to registered users: register at "
            "http://kahlan.eps.surrey.ac.uk/savee/Register.html, then pass url= with the "
            "download link you receive (or unpack AudioData/ yourself)."
        ),
    ),
    "emodb": Source(
        name="emodb",
        url="http://emodb.bilderbar.info/download/download.zip",
        licence="No explicit open licence; free of charge for research (TU Berlin)",
        citation=(
            "Burkhardt F, Paeschke A, Rolfes M, Sendlmeier W, Weiss B (2005). A database of "
            "German emotional speech. Proc. Interspeech 2005, 1517-1520."
        ),
        note="535 utterances under wav/; boredom is kept as its own label.",
    ),
}


def _source(name: str) -> Source:
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in CORPORA:
        raise DataError(f"corpus={name!r} must be one of: {', '.join(sorted(CORPORA))}")
    return CORPORA[key]


def _fetch(
    url: str,
    target: Path,
    progress: Callable[[int, int | None], None] | None,
    timeout: float,
) -> str:
    """Stream ``url`` into ``target``; return the SHA-256 hex digest."""
    digest = hashlib.sha256()
    req = urllib.request.Request(url, headers={"User-Agent": "vocalis-download"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(target, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress is not None:
                progress(0, total)
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as e:
        raise DataError(f"url={url} could not be downloaded: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"url={url} could not be downloaded: {reason}") from e
    return digest.hexdigest()


def _safe_target(dest: Path, member: str) -> Path:
    """Resolve archive member ``member`` under ``dest``, rejecting anything that escapes it."""
    posix = member.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or (parts and ":" in parts[0]) or ".." in parts:
        raise DataError(f"archive member={member!r} must stay inside {dest} (unsafe path)")
    target = (dest / posix).resolve()
    if target != dest and dest not in target.parents:
        raise DataError(f"archive member={member!r} must stay inside {dest} (unsafe path)")
    return target


def _extract(archive: Path, dest: Path) -> None:
    """Extract a zip or tar ``archive`` into ``dest`` after checking every member."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _safe_target(dest, info.filename)
                mode = info.external_attr >> 16
                if mode and (mode & 0o170000) == 0o120000:
                    raise DataError(f"archive member={info.filename!r} must not be a symbolic link")
            zf.extractall(dest)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _safe_target(dest, m.name)
                if not (m.isfile() or m.isdir()):
                    raise DataError(
                        f"archive member={m.name!r} must be a regular file or folder (links and "
                        "devices are refused)"
                    )
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tf.extractall(dest, members=members)  # members checked above
        return
    raise DataError(f"download={archive.name} must be a zip or tar archive")


def _corpus_folder(dest: Path) -> Path:
    """``dest`` itself, or its only sub-folder when the archive wrapped everything in one."""
    entries = [p for p in dest.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def _clear(dest: Path, *, remove: bool) -> None:
    if remove:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for p in dest.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def download_corpus(
    name: str,
    dest: Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60,
) -> Path:
    """Download corpus ``name`` into ``dest/<name>``; return the corpus folder.

    ``dest`` is a data folder that may hold other corpora (it is created if needed);
    ``dest/<name>`` must be absent or empty. If the archive wraps everything in one folder,
    that folder is returned, so the result can be passed straight to
    :func:`vocalis.corpora.load_corpus`. On any failure (network, checksum, unsafe archive,
    interruption) ``dest/<name>`` is left as it was found.

    ``url`` overrides the official location (a mirror, or the link SAVEE's registration gives
    you). ``sha256`` is the expected digest of the archive; by default the source's known
    digest is checked when the official URL is used. ``progress(done_bytes, total_bytes or
    None)`` is called while downloading. Licences differ and several are non-commercial:
    see :data:`CORPORA` and this module's docstring.
    """
    src = _source(name)
    if url is None and not src.direct:
        raise DataError(f"corpus={src.name} cannot be downloaded automatically: {src.note}")
    the_url = url or src.url
    expected = sha256 if sha256 is not None else (src.sha256 if url is None else None)
    dest = Path(dest).expanduser().resolve() / src.name
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"dest={dest} must be an empty or new folder (remove it to download again)")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    part = dest / f".{src.name}.download"
    try:
        digest = _fetch(the_url, part, progress, timeout)
        if expected is not None and digest.lower() != expected.lower():
            raise DataError(
                f"sha256={digest} of {the_url} must be {expected.lower()}: corrupted or changed download"
            )
        _extract(part, dest)
    except BaseException:
        _clear(dest, remove=created)  # dest was empty or new: everything in it is ours
        raise
    finally:
        part.unlink(missing_ok=True)
    return _corpus_folder(dest)
