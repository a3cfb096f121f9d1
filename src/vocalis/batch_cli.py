"""``vocalis batch INPUT… --out OUT.parquet``: analyse large folders of recordings, locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vocalis.audio.constants import DEFAULT_MAX_DURATION_S

MAX_ERRORS_SHOWN = 10


def batch(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files, or folders searched recursively (wav, flac, ogg, mp3, webm, m4a, opus).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Parquet file to write (replaced when the run succeeds). With --engine ray, a folder path ending in '/' gets Ray's part files instead.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model bundle (default: the bundled model).")] = None,
    engine: Annotated[str, typer.Option("--engine", "-e", help="'local' (process pool, default) or 'ray' (Ray Data: a local instance, or the cluster at --ray-address).")] = "local",
    workers: Annotated[int, typer.Option("--workers", "-j", help="Worker processes (local) or predictor actors (ray); 0 = one per CPU core.")] = 0,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to use, e.g. 'auto' when run on a cluster node (default: start a local instance).")] = None,
    max_duration: Annotated[float, typer.Option("--max-duration", help="Files longer than this (seconds) get an error row instead of a prediction.")] = DEFAULT_MAX_DURATION_S,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Analyse many recordings into a Parquet table: one row per file with label, class probabilities,
    valence, arousal and an error column (a file that cannot be decoded is a row, not a crash).

    Exit code 1 when some files failed (their rows say why), 2 on a usage error.
    """
    from vocalis.batch import BatchSpec, check_engine, find_audio, run_batch
    from vocalis.cli import _dump, _err, _progress

    check_engine(engine, ray_address)  # (out is a str: a trailing '/' names a folder, which Path would drop)
    spec = BatchSpec(model=str(model) if model else None, max_duration=max_duration)
    files = find_audio(inputs)
    with _progress(quiet) as prog:
        summary = run_batch(files, out, spec, engine=engine, workers=workers, ray_address=ray_address,
                            progress=prog)
    if json_out:
        _dump(summary.to_dict())
    else:
        typer.echo(f"{summary.ok} of {summary.files} files analysed ({summary.failed} failed), "
                   f"{summary.audio_s / 3600:.2f} h of audio in {summary.wall_s:.1f} s on {summary.engine} "
                   f"x{summary.workers}: {summary.files_per_s:.1f} files/s, "
                   f"{summary.audio_hours_per_hour:.0f} audio-hours/hour -> {summary.out}")
    for e in summary.errors[:MAX_ERRORS_SHOWN]:
        _err(e["error"])
    if summary.failed > MAX_ERRORS_SHOWN:
        _err(f"... and {summary.failed - MAX_ERRORS_SHOWN} more failed files; see the 'error' column of {summary.out}")
    if summary.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
