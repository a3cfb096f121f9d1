"""The triage report: ``report.json`` and a self-contained ``report.html`` queue.

The HTML needs no network and no plotting library: one page, calls sorted by priority (highest
first, ties by arrival order), each with its level, reasons, signals, an inline SVG timeline of the
caller's distress per window (grave words marked where they were said) and the transcript with the
grave words highlighted.
"""

from __future__ import annotations

import heapq
import html
import itertools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vocalis import __version__
from vocalis.triage.priority import clock

REPORT_VERSION = 1
_LEVEL_COLOURS = {"P1": "#b3261e", "P2": "#e8710a", "P3": "#c9a400", "P4": "#5f6368"}
_STATE_COLOURS = {"distress": "#b3261e", "calm": "#1a73e8", "cheerful": "#188038", "other": "#9aa0a6",
                  "scream": "#8e24aa"}


class TriageQueue:
    """Calls waiting for a dispatcher, highest priority first, then first come first served.

    >>> q = TriageQueue()
    >>> q.push("a", 20.0); q.push("b", 80.0); q.push("c", 80.0)
    >>> [q.pop() for _ in range(len(q))]
    ['b', 'c', 'a']
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._arrival = itertools.count()

    def push(self, item: Any, priority: float) -> None:
        heapq.heappush(self._heap, (-float(priority), next(self._arrival), item))

    def pop(self) -> Any:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


def ranked(calls: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Call dicts in queue order (see :class:`TriageQueue`)."""
    q = TriageQueue()
    for c in calls:
        q.push(c, c["priority"])
    return [q.pop() for _ in range(len(q))]


def build_report(calls: Sequence[dict[str, Any]], *, settings: dict[str, Any] | None = None,
                 errors: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    queue = ranked(calls)
    for rank, c in enumerate(queue, 1):
        c["rank"] = rank
    return {
        "version": REPORT_VERSION,
        "vocalis": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings or {},
        "n_calls": len(queue),
        "calls": queue,
        "errors": list(errors),
        "notice": "Decision support for a human dispatcher: signals are evidence, never a verdict.",
    }


def _timeline_svg(call: dict[str, Any], width: int = 640, height: int = 120) -> str:
    dur = max(float(call.get("duration_s") or 0.0), 1e-6)
    pad_l, pad_b, pad_t = 28, 18, 6
    w, h = width - pad_l - 6, height - pad_b - pad_t

    def xpos(t: float) -> float:
        return pad_l + w * min(max(t / dur, 0.0), 1.0)

    def ypos(p: float) -> float:
        return pad_t + h * (1.0 - min(max(p, 0.0), 1.0))

    parts = [f'<svg class="tl" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="caller state timeline">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>']
    for row in call.get("timeline", []):  # speech shading
        if row.get("speech", 0) > 0:
            parts.append(f'<rect x="{xpos(row["start"]):.1f}" y="{pad_t}" width="{xpos(row["end"]) - xpos(row["start"]):.1f}" '
                         f'height="{h}" fill="#e8f0fe" opacity="{min(1.0, row["speech"]):.2f}"/>')
    rows = [r for r in call.get("timeline", []) if r.get("distress") is not None]
    states = sorted({k for r in rows for k in r.get("states", {})} - {"distress"})
    series = [(st, [(0.5 * (r["start"] + r["end"]), r["states"].get(st, 0.0)) for r in rows]) for st in states]
    series.append(("distress", [(0.5 * (r["start"] + r["end"]), r["distress"]) for r in rows]))
    if any("scream" in r for r in rows):
        series.append(("scream", [(0.5 * (r["start"] + r["end"]), r.get("scream", 0.0)) for r in rows]))
    for st, pts in series:
        if not pts:
            continue
        colour = _STATE_COLOURS.get(st, "#777")
        width_px = 2.5 if st in ("distress", "scream") else 1.2
        path = " ".join(f"{xpos(t):.1f},{ypos(p):.1f}" for t, p in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{width_px}">'
                     f'<title>{html.escape(st)}</title></polyline>')
    states = [name for name, pts in series if pts]
    for kw in call.get("keywords", []):
        if kw.get("start") is None:
            continue
        colour = "#999" if kw["negated"] else "#000"
        x = xpos(kw["start"])
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad_t}" y2="{pad_t + h}" stroke="{colour}" '
                     f'stroke-dasharray="3,2"><title>{html.escape(kw["phrase"])} {clock(kw["start"])}</title></line>')
    for frac in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{pad_l - 4}" y="{ypos(frac) + 4:.1f}" font-size="9" text-anchor="end">{frac:.1f}</text>')
    for i in range(5):
        t = dur * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{xpos(t):.1f}" y="{height - 4}" font-size="9" text-anchor="{anchor}">{clock(t)}</text>')
    parts.append("</svg>")
    legend = " ".join(f'<span style="color:{_STATE_COLOURS.get(s, "#777")}">&#9632; {html.escape(s)}</span>'
                      for s in states)
    return "".join(parts) + f'<div class="legend">{legend} <span>&#9475; grave word</span></div>'


def _transcript_html(call: dict[str, Any]) -> str:
    tr = call.get("transcript", {})
    marks = [(k["start"], k["end"], k["negated"]) for k in call.get("keywords", []) if k.get("start") is not None]
    words = [w for s in tr.get("segments", []) for w in s.get("words", [])]
    if not words:
        return html.escape(tr.get("text", "")) or "<em>no speech transcribed</em>"
    out = []
    for w in words:
        hit = next((neg for a, b, neg in marks if a <= w["start"] and w["end"] <= b + 1e-6), None)
        txt = html.escape(w["text"])
        title = f'{clock(w["start"])} p={w["probability"]:.2f}'
        if hit is None:
            cls = ' class="lowconf"' if w["probability"] < 0.5 else ""
            out.append(f'<span title="{title}"{cls}>{txt}</span>')
        else:
            out.append(f'<mark class="{"neg" if hit else "grave"}" title="{title}">{txt}</mark>')
    return " ".join(out)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:960px;color:#202124}
h1{font-size:1.4rem} table.q{border-collapse:collapse;width:100%;margin-bottom:2rem}
table.q td,table.q th{border-bottom:1px solid #e0e0e0;padding:.35rem .5rem;text-align:left;vertical-align:top}
.lvl{color:#fff;border-radius:4px;padding:.05rem .45rem;font-weight:600}
section.call{border:1px solid #e0e0e0;border-radius:8px;padding:.8rem 1rem;margin:1rem 0}
mark.grave{background:#fcd7d4;font-weight:600} mark.neg{background:#eee;text-decoration:line-through}
.lowconf{color:#888} .sig{color:#8a4b00} .legend{font-size:12px;color:#555;margin-bottom:.5rem}
.notice{background:#fff8e1;padding:.5rem .8rem;border-radius:6px}
"""


def render_html(report: dict[str, Any]) -> str:
    calls = report["calls"]
    rows = []
    for c in calls:
        top = "; ".join(r["text"] for r in c["reasons"][:2]) or "—"
        rows.append(
            f'<tr><td>{c["rank"]}</td><td><span class="lvl" style="background:{_LEVEL_COLOURS.get(c["level"], "#555")}">'
            f'{c["level"]}</span> {c["priority"]:.0f}</td><td><a href="#call-{c["rank"]}">{html.escape(c["call_id"])}</a></td>'
            f'<td>{clock(c["duration_s"])}</td><td>{html.escape(top)}</td></tr>')
    sections = []
    for c in calls:
        reasons = "".join(f'<li>{html.escape(r["text"])} <small>({r["contribution"]:+.0f})</small></li>'
                          for r in c["reasons"]) or "<li>no grave words, no distress</li>"
        sigs = "".join(f'<li class="sig">{html.escape(s["name"].replace("_", " "))}: {html.escape(s["evidence"])}</li>'
                       for s in c["signals"])
        sections.append(
            f'<section class="call" id="call-{c["rank"]}"><h2>#{c["rank"]} {html.escape(c["call_id"])} '
            f'<span class="lvl" style="background:{_LEVEL_COLOURS.get(c["level"], "#555")}">{c["level"]} '
            f'{c["priority"]:.0f}</span></h2>'
            f'<p>{clock(c["duration_s"])} long, {c["speech_s"]:.0f} s of speech; gravity {c["gravity"]:.2f}, '
            f'distress {c["affect"]:.2f}</p><ul>{reasons}</ul>'
            + (f"<p>Signals (evidence, not a verdict):</p><ul>{sigs}</ul>" if sigs else "")
            + _timeline_svg(c) + f'<p class="tr">{_transcript_html(c)}</p></section>')
    errors = "".join(f'<li>{html.escape(e["file"])}: {html.escape(e["error"])}</li>' for e in report.get("errors", []))
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vocalis call triage</title>"
        f"<style>{_CSS}</style></head><body><h1>Call triage — {report['n_calls']} calls</h1>"
        f'<p class="notice">{html.escape(report["notice"])} Created {html.escape(report["created"])} '
        f"by Vocalis {html.escape(report['vocalis'])}.</p>"
        '<table class="q"><thead><tr><th>#</th><th>priority</th><th>call</th><th>length</th><th>why</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        + (f"<h2>Not analysed</h2><ul>{errors}</ul>" if errors else "")
        + "".join(sections) + "</body></html>"
    )


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, ht = out / "report.json", out / "report.html"
    for path, text in ((js, json.dumps(report, indent=1, ensure_ascii=False)), (ht, render_html(report))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return js, ht
