"""The ``vocalis`` command line. Converts every :class:`VocalisError` into a clean message.

Exit codes: 0 ok, 1 some inputs failed (others were processed), 2 usage or data error, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from vocalis.audio.constants import DEFAULT_MAX_DURATION_S
from vocalis.cli_options import folds, os_message, positive_seconds, writable_file
from vocalis.errors import VocalisError

app = typer.Typer(
    name="vocalis",
    help="Hear emotion and distress in a human voice. Accuracy is speaker-independent unless stated.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="Corpora: list the known ones, download one (needs internet).", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


def _err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


def _dump(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """A rich progress bar on a TTY (stderr), silent otherwise or with ``--quiet``."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as prog:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        yield update


def _load_corpora(data_dirs: list[Path], label_map: str | None, labels: str | None) -> Any:
    from vocalis.corpora import Corpus, load_corpus, parse_label_map

    mapping = parse_label_map(label_map) if label_map else None
    keep = [s.strip() for s in labels.split(",") if s.strip()] if labels else None
    corpora = [load_corpus(d, label_map=mapping, labels=keep) for d in data_dirs]
    return corpora[0] if len(corpora) == 1 else Corpus.merge(corpora)


def _recipe(recipe: str | None, backbone: str | None, augment: int = 0) -> Any:
    from dataclasses import replace

    from vocalis.training.recipes import get_recipe

    r = get_recipe(recipe)
    if backbone:
        r = r.with_backbone(backbone)
    if augment:
        from vocalis.augment import AugmentConfig

        r = replace(r, augment=AugmentConfig(copies=augment).to_dict())
    return r


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Model bundle (default: the bundled model).")]
LabelMapOpt = Annotated[str | None, typer.Option("--label-map", help="Rename/merge labels: 'calm=neutral,surprise=' (empty drops).")]
LabelsOpt = Annotated[str | None, typer.Option("--labels", help="Keep only these labels (comma-separated).")]
RecipeOpt = Annotated[str | None, typer.Option("--recipe", help="Recipe name (see 'vocalis recipes').")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help="Whisper backbone: size name or CTranslate2 model dir.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Feature extraction threads.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the feature cache.")]
AugmentOpt = Annotated[int, typer.Option("--augment", min=0, max=10, help="Augmented copies (noise, stretch, pitch, shift, gain) per TRAINING clip; test folds are never augmented.")]


@app.command()
def predict(
    files: Annotated[list[Path], typer.Argument(help="Audio files (wav, flac, ogg/opus, mp3, webm, ...).")],
    model: ModelOpt = None,
    json_out: JsonOpt = False,
    max_duration: Annotated[float, typer.Option(help="Reject files longer than this (seconds).",
                                                callback=positive_seconds)] = DEFAULT_MAX_DURATION_S,
) -> None:
    """Predict the emotion of each file: label, class probabilities, valence and arousal, and
    whether it holds speech (a label of a clip without speech is marked as a guess)."""
    from vocalis.bundle import load_bundle

    bundle = load_bundle(model)
    failed = 0
    for f in files:
        try:
            pred = bundle.predict_file(f, max_duration=max_duration)
        except VocalisError as e:
            failed += 1
            _err(str(e))
            continue
        if json_out:
            _dump({"file": str(f), **pred.to_dict()})
        else:
            top = sorted(pred.probabilities.items(), key=lambda kv: -kv[1])[:3]
            alts = ", ".join(f"{k} {v:.2f}" for k, v in top)
            line = f"{f}: {pred.label}  ({alts})  valence {pred.valence:+.2f} arousal {pred.arousal:+.2f}"
            if pred.speech is not None and pred.speech.detected is False:  # None: the energy VAD cannot tell
                # noise, a tone or a scream still gets a label; say that it is a guess
                line += f"  [{pred.speech.describe()}: the label is a guess]"
            typer.echo(line)
    if failed:
        raise typer.Exit(1)


@app.command()
def train(
    data_dirs: Annotated[list[Path], typer.Argument(help="Corpus folders (manifest.csv or a known layout).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write (e.g. my.vocalis).")],
    recipe: RecipeOpt = None,
    backbone: BackboneOpt = None,
    label_map: LabelMapOpt = None,
    labels: LabelsOpt = None,
    cv: Annotated[int, typer.Option(help="Speaker-independent CV folds for the manifest metrics and calibration (0 = skip).",
                                    callback=lambda v: folds(v, allow_zero=True))] = 6,
    augment: AugmentOpt = 0,
    seed: int = 0,
    workers: WorkersOpt = 2,
    no_cache: NoCacheOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a model bundle on one or more corpora."""
    from vocalis.training.cv import train_bundle

    r = _recipe(recipe, backbone, augment)
    corpus = _load_corpora(data_dirs, label_map, labels)
    with _progress(quiet) as prog:
        path, manifest = train_bundle(corpus, r, out, cv_folds=cv, seed=seed, workers=workers,
                                      use_cache=not no_cache, progress=prog)
    summary = {"model": str(path), "recipe": r.name, "labels": manifest.labels, "training": manifest.training,
               "metrics": manifest.metrics, "calibration": manifest.calibration}
    if json_out:
        _dump(summary)
    else:
        cvm = manifest.metrics.get("cv")
        extra = f"; {cvm['split']}: WA {cvm['wa']:.3f} UA {cvm['ua']:.3f}" if cvm else ""
        typer.echo(f"wrote {path} ({r.name}, {len(corpus)} clips, labels {', '.join(manifest.labels)}){extra}")


@app.command()
def evaluate(
    data_dir: Annotated[Path, typer.Argument(help="Corpus folder to score the model on.")],
    model: ModelOpt = None,
    restrict_labels: Annotated[bool, typer.Option("--restrict-labels", help="Drop model classes absent from the data before the argmax (cross-corpus protocol).")] = False,
    label_map: LabelMapOpt = None,
    labels: LabelsOpt = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the confusion matrix PNG here.", callback=writable_file)] = None,
    workers: WorkersOpt = 2,
    no_cache: NoCacheOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score a model bundle on a labelled corpus (WA, UA, macro-F1, confusion)."""
    from vocalis.bundle import load_bundle
    from vocalis.training.cv import evaluate_bundle

    corpus = _load_corpora([data_dir], label_map, labels)
    bundle = load_bundle(model)
    with _progress(quiet) as prog:
        res = evaluate_bundle(bundle, corpus, restrict_labels=restrict_labels, workers=workers,
                              use_cache=not no_cache, progress=prog)
    if plot:
        from vocalis.training.metrics import plot_confusion

        plot_confusion(res, str(plot), f"{corpus.name}: WA {res['wa']:.3f} UA {res['ua']:.3f} (n={res['n']})")
    seen = corpus.name in (bundle.manifest.training or {}).get("corpora", [])
    split = (f"not held out: the model was trained on corpus {corpus.name!r}; for speaker-independent "
             "accuracy run 'vocalis cv'") if seen else "held out (a corpus the model was not trained on)"
    if seen:
        _err(f"warning: {split}")
    if json_out:
        _dump({k: res[k] for k in ("n", "wa", "ua", "macro_f1", "labels", "confusion", "restricted", "per_class")}
              | {"split": split, "held_out": not seen})
    else:
        typer.echo(f"{corpus.name}: n={res['n']}  WA {res['wa']:.3f}  UA {res['ua']:.3f}  macro-F1 {res['macro_f1']:.3f}"
                   + ("  (restricted to shared labels)" if restrict_labels else "")
                   + ("  [NOT held out]" if seen else ""))
        for lab, pc in res["per_class"].items():
            typer.echo(f"  {lab:>10}  recall {pc['recall']:.3f}  precision {pc['precision']:.3f}  n={pc['support']}")


@app.command("cv")
def cross_validate_cmd(
    data_dirs: Annotated[list[Path], typer.Argument(help="Corpus folder(s).")],
    folds: Annotated[int, typer.Option(min=2, help="Number of folds.")] = 6,
    by: Annotated[str, typer.Option(help="'speaker' (independent, default) or 'random' (leaky, for comparison).")] = "speaker",
    recipe: RecipeOpt = None,
    backbone: BackboneOpt = None,
    label_map: LabelMapOpt = None,
    labels: LabelsOpt = None,
    augment: AugmentOpt = 0,
    seed: int = 0,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the pooled confusion matrix PNG here.", callback=writable_file)] = None,
    workers: WorkersOpt = 2,
    no_cache: NoCacheOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Cross-validate a recipe; folds are speaker-disjoint unless --by random."""
    from vocalis.training.cv import cross_validate

    r = _recipe(recipe, backbone, augment)
    corpus = _load_corpora(data_dirs, label_map, labels)
    with _progress(quiet) as prog:
        res = cross_validate(corpus, r, folds=folds, by=by, seed=seed, workers=workers,
                             use_cache=not no_cache, progress=prog)
    res.pop("_oof", None)
    if plot:
        from vocalis.training.metrics import plot_confusion

        plot_confusion(res["pooled"], str(plot), f"{corpus.name} {r.name} ({by} folds): WA {res['wa']:.3f} UA {res['ua']:.3f}")
    if json_out:
        _dump(res)
    else:
        typer.echo(f"{r.name} on {corpus.name}: {res['split']}")
        for i, f in enumerate(res["folds"], 1):
            spk = ",".join(f["test_speakers"]) if f["test_speakers"] else "-"
            typer.echo(f"  fold {i}: test speakers {spk:<20} n={f['n']:<5} WA {f['wa']:.3f}  UA {f['ua']:.3f}")
        typer.echo(f"  mean: WA {res['wa']:.3f}  UA {res['ua']:.3f}  macro-F1 {res['macro_f1']:.3f}  ECE {res['ece']:.3f}")


@app.command()
def recipes(json_out: JsonOpt = False) -> None:
    """List the training recipes (the default first)."""
    from vocalis.training.recipes import DEFAULT_RECIPE, RECIPES

    names = [DEFAULT_RECIPE, *sorted(n for n in RECIPES if n != DEFAULT_RECIPE)]
    if json_out:
        _dump([RECIPES[n].to_dict() for n in names])
        return
    for n in names:
        mark = " (default)" if n == DEFAULT_RECIPE else ""
        typer.echo(f"{n}{mark}: {RECIPES[n].description}")


@app.command()
def info(model: ModelOpt = None, json_out: JsonOpt = False) -> None:
    """Show a bundle's manifest: labels, features, training data, metrics with their split."""
    from vocalis.bundle import load_bundle

    b = load_bundle(model)
    m = b.manifest.to_dict()
    if json_out:
        _dump({"model": b.source, **m})
        return
    typer.echo(f"model: {b.source}\nname: {m['name']}\nlabels: {', '.join(m['labels'])}")
    typer.echo(f"recipe: {m['recipe'].get('name', '?')} — {m['recipe'].get('description', '')}")
    typer.echo(f"training: {json.dumps(m['training'])}")
    cvm = m["metrics"].get("cv")
    if cvm:
        typer.echo(f"metrics: WA {cvm['wa']:.3f} UA {cvm['ua']:.3f} ({cvm['split']})")


@app.command()
def monitor(
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Play this audio file as a live stream.")] = None,
    mic: Annotated[bool, typer.Option("--mic", help="Listen to the microphone (extra 'mic').")] = False,
    speed: Annotated[float, typer.Option(help="With --file: 1 = real time, 0 = as fast as possible.")] = 1.0,
    duration: Annotated[float | None, typer.Option(help="With --mic: stop after this many seconds.")] = None,
    model: ModelOpt = None,
    scream_model: Annotated[Path | None, typer.Option(
        help="Scream detector bundle (default: the bundled two-stage detector). Its operating point is the "
             "threshold.")] = None,
    scream_confirm_model: Annotated[Path | None, typer.Option(
        help="Second-stage bundle for --scream-model (its manifest holds the gate and the operating point).")] = None,
    countdown: Annotated[float | None, typer.Option(help="Seconds between confirmed danger and the alert.")] = None,
    level_gain: Annotated[bool | None, typer.Option(
        "--level-gain/--no-level-gain",
        help="Slow gain in front of the scream detector: the stream's usual voiced level is turned down to "
             "-18 dBFS, for microphones that run very hot (default: off).")] = None,
    no_emotion: Annotated[bool, typer.Option("--no-emotion", help="Skip the emotion model (cheapest).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Watch a stream for danger: one line per window and per event (danger.started, countdown, alert, ...).

    Every JSON line has "type" and "t" (seconds of stream time). This command never sends
    alerts; the service does.
    """
    from vocalis.danger.monitor import monitor_file, monitor_mic

    if bool(file) == bool(mic):
        raise typer.BadParameter("give exactly one of --file F or --mic")
    policy = {"countdown_s": countdown} if countdown is not None else None
    stream_config = None
    if level_gain is not None:
        from vocalis.streaming.gain import GainConfig
        from vocalis.streaming.predictor import StreamConfig

        stream_config = StreamConfig(level_gain=GainConfig() if level_gain else None)
    emotion: Any = False if no_emotion else (str(model) if model else None)
    scream: Any = str(scream_model) if scream_model else None
    if scream_confirm_model is not None:
        from vocalis.danger.detector import load_scream_detector

        if scream_model is None:
            raise typer.BadParameter("--scream-confirm-model needs --scream-model (the stage it was gated on)")
        scream = load_scream_detector(scream_model, scream_confirm_model)
    if file:
        lines = monitor_file(file, speed=speed, emotion_model=emotion, scream_model=scream, policy_config=policy,
                             stream_config=stream_config)
    else:
        lines = monitor_mic(duration_s=duration, emotion_model=emotion, scream_model=scream, policy_config=policy,
                            stream_config=stream_config)
    for d in lines:
        if json_out:
            _dump(d)
        elif d["type"] == "window":
            typer.echo(f"{d['t']:7.2f}s  risk {d.get('risk', 0):.2f}  scream {d.get('scream', 0):.2f}  "
                       f"voice {d.get('voice', 0):.2f}  {', '.join(d.get('keywords') or [])}")
        else:
            extra = {k: v for k, v in d.items() if k not in ("type", "t")}
            typer.echo(f"{d['t']:7.2f}s  ** {d['type']} {json.dumps(extra)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP service (REST API, docs at /docs). Configure with VOCALIS_* environment variables."""
    from vocalis.errors import require

    require("fastapi", "serve")
    require("uvicorn", "serve")
    from vocalis.service.app import main as serve_main
    from vocalis.service.settings import check_environment

    check_environment()

    serve_main(host, port, log_level=log_level)


@datasets_app.command("list")
def datasets_list(json_out: JsonOpt = False) -> None:
    """Known corpora, their publishers and licences."""
    from vocalis.corpora.download import CORPORA

    rows = [{"name": s.name, "url": s.url, "licence": s.licence} for s in CORPORA.values()]
    if json_out:
        _dump(rows)
        return
    for r in rows:
        typer.echo(f"{r['name']:<8} {r['licence']:<24} {r['url']}")


@datasets_app.command("download")
def datasets_download(
    name: Annotated[str, typer.Argument(help="Corpus name (see 'vocalis datasets list').")],
    dest: Annotated[Path, typer.Option("--dest", help="Folder to extract into.")] = Path("data"),
    url: Annotated[str | None, typer.Option(help="Override the download URL (mirror).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Download a corpus from its official publisher (needs internet; mind the licence)."""
    from vocalis.corpora.download import download_corpus

    with _progress(quiet) as prog:
        cb = (lambda done, total: prog("download", done, total or 0)) if prog else None
        path = download_corpus(name, dest, url=url, progress=cb)
    typer.echo(str(path))


def _mount_wellbeing() -> None:
    from vocalis import wellbeing_cli

    wellbeing_cli.register(app)


def _mount_triage() -> None:
    from vocalis import triage_cli

    triage_cli.register(app)


def _mount_batch() -> None:
    from vocalis import batch_cli

    batch_cli.register(app)


_mount_wellbeing()
_mount_triage()
_mount_batch()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except VocalisError as e:
        _err(str(e))
        sys.exit(2)
    except OSError as e:  # a path the user gave cannot be read or written: their error, not a crash
        _err(os_message(e))
        sys.exit(2)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
