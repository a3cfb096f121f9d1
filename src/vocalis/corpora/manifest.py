"""``manifest.csv``: the explicit, corpus-independent way to describe a data set.

Columns (header row required, UTF-8, comma-separated):

* ``path`` (required): audio file, relative to the corpus folder, ``/``-separated; it must
  stay inside that folder (no ``..``, not absolute) and exist;
* ``label`` (required, non-empty): kept exactly as written (only surrounding blanks are
  trimmed), so custom labels such as ``scream`` pass through; rename with a label map;
* ``speaker`` (required column): an empty value becomes ``"unknown"``;
* ``gender`` (optional): lower-cased, empty -> ``None``;
* every other column goes, as a string, into :attr:`Utterance.extra`.

Errors are :class:`~vocalis.errors.DataError` naming the manifest, the line (the header is
line 1) and the offending value. The corpus name is the corpus folder's name.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from vocalis.corpora.types import Corpus, Utterance
from vocalis.errors import DataError

MANIFEST = "manifest.csv"
REQUIRED = ("path", "label", "speaker")
KNOWN = (*REQUIRED, "gender")
UNKNOWN_SPEAKER = "unknown"


def _escapes(rel: str) -> bool:
    """True when ``rel`` is absolute (POSIX or Windows) or climbs out with ``..``."""
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        return True
    return ".." in PurePosixPath(rel.replace("\\", "/")).parts


def load_manifest(root: Path, manifest: Path | None = None) -> Corpus:
    """Read ``manifest`` (default ``root/manifest.csv``); paths in it are relative to ``root``."""
    root = Path(root).expanduser().resolve()
    mf = Path(manifest).expanduser().resolve() if manifest is not None else root / MANIFEST
    if not mf.is_file():
        raise DataError(f"manifest={mf} must be an existing file")
    try:
        with open(mf, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing_cols = [c for c in REQUIRED if c not in header]
            if missing_cols:
                raise DataError(
                    f"{mf}: columns={header} must include {', '.join(missing_cols)} "
                    f"(required: {', '.join(REQUIRED)})"
                )
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as e:
        raise DataError(f"manifest={mf} must be UTF-8 text: {e}") from e
    except csv.Error as e:
        raise DataError(f"manifest={mf} is not valid CSV: {e}") from e

    items: list[Utterance] = []
    seen: dict[str, int] = {}
    missing: list[str] = []
    for line, row in rows:
        if None in row:  # more cells than header columns
            raise DataError(f"{mf} line {line}: cells={len(header) + len(row[None])} must be {len(header)}")
        rel = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip()
        if not rel:
            raise DataError(f"{mf} line {line}: path={rel!r} must not be empty")
        if not label:
            raise DataError(f"{mf} line {line}: label={label!r} must not be empty (path={rel})")
        if _escapes(rel):
            raise DataError(f"{mf} line {line}: path={rel!r} must be relative and stay inside {root}")
        key = os.path.normpath(rel.replace("\\", "/"))
        if key in seen:
            raise DataError(
                f"{mf} line {line}: path={rel!r} must be unique; it is already on line {seen[key]}"
            )
        seen[key] = line
        path = root / key
        if not path.is_file():
            missing.append(f"{rel} (line {line})")
        speaker = (row.get("speaker") or "").strip() or UNKNOWN_SPEAKER
        gender = (row.get("gender") or "").strip().lower() or None
        extra = {k: (v or "").strip() for k, v in row.items() if k not in KNOWN and k is not None}
        items.append(Utterance(path, label, speaker, gender, root.name, extra))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"{mf}: missing_files={len(missing)} must be 0; not found under {root}: {shown}")
    if not items:
        raise DataError(f"manifest={mf} must list at least one file")
    return Corpus(root.name, root, items)


def write_manifest(corpus: Corpus, path: Path) -> Path:
    """Write ``corpus`` as a manifest at ``path``; audio paths are stored relative to its folder.

    Columns: ``path, label, speaker, gender`` then every ``extra`` key, sorted. Every
    utterance must lie under the manifest's folder. The file is replaced atomically.
    """
    path = Path(path).expanduser().resolve()
    base = path.parent
    extra_keys = sorted({k for u in corpus.items for k in u.extra} - set(KNOWN))
    rows = []
    for u in corpus.items:
        try:
            rel = Path(u.path).resolve().relative_to(base).as_posix()
        except ValueError as e:
            raise DataError(f"path={u.path} must lie under the manifest folder {base}") from e
        row = {"path": rel, "label": u.label, "speaker": u.speaker, "gender": u.gender or ""}
        row.update({k: str(u.extra.get(k, "")) for k in extra_keys})
        rows.append(row)
    tmp = path.with_name(f".{path.name}.tmp")
    base.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*KNOWN, *extra_keys], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
