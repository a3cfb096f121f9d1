"""``vocalis triage CALLS… --out REPORT_DIR``: analyse recorded calls into a priority queue."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def triage(
    calls: Annotated[list[Path], typer.Argument(help="Call recordings: folders (searched recursively) or files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json and report.html.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Caller-state bundle (default: the bundled emotion model, mapped to caller states).")] = None,
    asr_model: Annotated[str, typer.Option("--asr-model", help="Whisper model: tiny.en (packaged, offline), another size (downloaded) or a CTranslate2 folder.")] = "tiny.en",
    asr_encoder: Annotated[str, typer.Option("--asr-encoder", help="Whisper encoder runtime: onnx (int8 onnxruntime, faster on a CPU) or ctranslate2.")] = "onnx",
    asr_decoder: Annotated[str, typer.Option("--asr-decoder", help="Whisper decoder runtime for greedy decoding: onnx (int8 onnxruntime, faster on a CPU) or ctranslate2.")] = "onnx",
    no_transcript: Annotated[bool, typer.Option("--no-transcript", help="Skip speech-to-text (voice only).")] = False,
    language: Annotated[str | None, typer.Option("--language", help="Spoken language for a multilingual model ('auto' detects).")] = "en",
    lexicon: Annotated[Path | None, typer.Option("--lexicon", help="Gravity lexicon JSON (see vocalis.triage.lexicon).")] = None,
    scream_model: Annotated[Path | None, typer.Option("--scream-model", help="Scream detector bundle (default: bundled).")] = None,
    no_scream: Annotated[bool, typer.Option("--no-scream", help="Do not use the scream detector.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=0, help="Worker processes (0 = one per CPU core, at most 4).")] = 0,
    window: Annotated[float, typer.Option(help="Caller-state window (seconds).")] = 3.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the queue as JSON lines (call_id, rank, priority, level, reasons).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Triage emergency calls: caller state, transcript, grave words, prank signals -> a priority queue.

    Decision support for a human dispatcher; signals are evidence, never a verdict.
    """
    from vocalis.cli import _dump, _err, _progress
    from vocalis.triage import (
        AnalyzerSpec,
        GravityLexicon,
        TriageConfig,
        build_report,
        find_calls,
        triage_files,
    )
    from vocalis.triage.report import write_report

    files = find_calls(calls)
    lex = GravityLexicon.from_file(lexicon).to_dict() if lexicon else None
    lang = None if language in (None, "auto") else language
    spec = AnalyzerSpec(model=str(model) if model else None, asr_model=None if no_transcript else asr_model,
                        lexicon=lex, config=TriageConfig(window_s=window, hop_s=window), language=lang,
                        scream_model=False if no_scream else (str(scream_model) if scream_model else None),
                        asr_encoder=asr_encoder, asr_decoder=asr_decoder)
    spec.build()  # fail fast (bad model, lexicon or config) before starting workers
    if spec.asr_model:  # and on a speech model that cannot be found (or downloaded) before any call
        from vocalis.features.whisper import resolve_model_path

        resolve_model_path(spec.asr_model)
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{str(out)!r} is a file; --out must be a folder (for report.json and report.html)",
                                 param_hint="--out")
    out.mkdir(parents=True, exist_ok=True)
    n_jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    reports: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    t0 = time.perf_counter()
    with _progress(quiet) as prog:
        for f, rep, err in triage_files(files, spec, jobs=n_jobs, progress=prog):
            if err is not None:
                errors.append({"file": str(f), "error": err})
                _err(err)
            elif rep is not None:
                reports.append(rep)
    order = {str(f): i for i, f in enumerate(files)}  # ties in priority keep the calls' order
    reports.sort(key=lambda r: order.get(str(r.get("source")), len(order)))
    wall = time.perf_counter() - t0
    audio_s = sum(r["duration_s"] for r in reports)
    report = build_report(reports, errors=errors, settings={
        "model": spec.model or "bundled default", "asr_model": spec.asr_model, "lexicon": str(lexicon or "default"),
        "window_s": window, "jobs": n_jobs, "wall_s": round(wall, 2), "audio_s": round(audio_s, 2),
        "x_real_time": round(audio_s / wall, 1) if wall > 0 else None,
    })
    js, ht = write_report(report, out)
    if json_out:
        for c in report["calls"]:
            _dump({k: c[k] for k in ("call_id", "rank", "priority", "level")} | {"reasons": [r["text"] for r in c["reasons"]]})
    else:
        for c in report["calls"]:
            why = "; ".join(r["text"] for r in c["reasons"][:2]) or "-"
            typer.echo(f"{c['rank']:>3}  {c['level']} {c['priority']:5.1f}  {c['call_id']}  {why}")
        typer.echo(f"{len(reports)} calls, {audio_s / 60:.1f} min of audio in {wall:.1f} s -> {js} , {ht}")
    if errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("triage")(triage)
