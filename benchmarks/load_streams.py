"""Load test of the live stream: N concurrent WebSocket sessions of real speech, at real time, against ``vocalis serve``.

Method. The script decodes ``--files`` RAVDESS and TESS clips once (16 kHz, evenly spaced over the
sorted file lists, alternating corpora) into one "tape" of real speech with the corpora's own pauses,
starts ``vocalis serve`` as a subprocess on 127.0.0.1 (a free port, a temporary
``VOCALIS_DATA_DIR``, SQLite, ``VOCALIS_STREAM_MAX_SESSIONS`` >= N; everything else the defaults:
the bundled emotion model every 2nd hop, the scream detector and Silero VAD on every 0.5 s hop of a
2 s window, keyword spotting on scream-like windows, 30 s history records), registers a few users
and opens ``--streams`` sessions (``encoding=pcm16&sample_rate=16000``, what the web UI sends),
started evenly over ``--ramp`` seconds, each reading the tape from its own offset. Every session
sends ``--chunk-ms`` chunks at real time on an absolute schedule (250 ms: what the web UI sends)
until the end; the **measured phase** is the ``--duration`` seconds after the last session opened.

Latency of a window = arrival of its ``prediction`` at the client - the moment the chunk that
completed the window (the chunk holding its ``t_end``) was handed to the socket; only windows
completed in the measured phase count. A window is *missing* when its ``t_end`` was sent in the
measured phase but no prediction for it arrived by the end (dropped audio, a closed session);
*late* when its latency is over 250 ms. Server CPU (% of one core; 200 % = both cores) and RSS are
sampled every second from ``/proc/<pid>`` (psutil if installed), the client's own CPU and its
event-loop lag too (client and server share the machine); the server's stream-engine counters
(batch sizes, emotion runs and deferrals, dropped audio, queue high-water mark) are read from
``/metrics`` at the end. The load average is recorded: the machine is shared with other jobs.

    python benchmarks/load_streams.py [--streams 200] [--duration 300] [--chunk-ms 100] [--ramp 20]

Network traffic stays on 127.0.0.1; every loop is bounded by the duration and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, save, section
from vocalis.service.ws import StreamSettings

SR = 16_000
WINDOW_S, HOP_S = 2.0, 0.5
GOAL_P99_MS = 250.0
LATE_MS = 250.0
USERS = 10


# -- audio -----------------------------------------------------------------------------------------


def speech_tape(n_files: int, data: Path = DATA) -> tuple[np.ndarray, int]:
    """``n_files`` RAVDESS + TESS clips decoded once to 16 kHz int16 and joined; returns (tape, files)."""
    from vocalis.audio.io import load_audio

    lists = [sorted((data / c).rglob("*.flac")) for c in ("ravdess", "tess")]
    lists = [x for x in lists if x]
    if not lists:
        sys.exit(f"benchmark needs ../shared/data/ravdess (and tess) FLAC files at {data}; not found")
    per = -(-n_files // len(lists))
    picked: list[Path] = []
    for i in range(per):  # alternate corpora, evenly spaced over each sorted list
        for files in lists:
            if len(picked) < n_files and i < len(files):
                picked.append(files[int(i * len(files) / per)])
    parts = [load_audio(p, SR) for p in picked]
    x = np.concatenate(parts)
    return (np.clip(x, -1, 1) * 32767).astype("<i2"), len(parts)


# -- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, data_dir: Path, streams: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VOCALIS_DATA_DIR": str(data_dir),
        "VOCALIS_SECRET_KEY": "load-test-secret",
        "VOCALIS_STREAM_MAX_SESSIONS": str(streams + 8),
        **extra_env,
    }
    cmd = [sys.executable, "-c", "from vocalis.cli import main; main()", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]
    log = open(data_dir.parent / "server.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir.parent)


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode} before it was healthy")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    sys.exit(f"server not healthy after {timeout:g} s")


def register_users(base: str, n: int) -> list[str]:
    import httpx

    keys = []
    with httpx.Client(base_url=base, timeout=30.0) as c:
        for i in range(n):
            r = c.post("/v1/users", json={"email": f"load{i}@example.org", "password": "correct horse battery"})
            r.raise_for_status()
            keys.append(r.json()["api_key"]["key"])
    return keys


def engine_metrics(base: str) -> dict[str, float]:
    """The ``vocalis_stream_engine_*`` and window-latency histogram values from ``/metrics``."""
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=10.0).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(vocalis_stream_engine_\w+|vocalis_stream_window_latency_seconds_(?:count|sum))"
                     r"(?:\{[^}]*\})?\s+([-+\deE.naif]+)$", line)
        if m:
            key = m.group(1).removeprefix("vocalis_stream_engine_")
            if not key.startswith("vocalis_"):
                key = key.removesuffix("_total")  # prometheus names counters *_total
            out[key] = float(m.group(2))
        m = re.match(r'^vocalis_stream_window_latency_seconds_bucket\{le="([^"]+)"\}\s+(\S+)$', line)
        if m:
            out[f"server_latency_le_{m.group(1)}"] = float(m.group(2))
    return out


class ProcSampler:
    """CPU seconds and RSS of a process and of its children (psutil when installed, else ``/proc``).

    The server's children: the keyword-spotting process (and multiprocessing's helpers)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ps: Any = None
        try:
            import psutil

            self._ps = psutil.Process(pid)
        except Exception:
            self._ps = None
        self._tick = os.sysconf("SC_CLK_TCK")

    def _one(self, pid: int) -> tuple[float, float]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / self._tick
        rss_kb = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
        return cpu, rss_kb / 1024

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    out += [int(c) for c in (task / "children").read_text().split()]
        return out

    def sample(self) -> tuple[float, float, float, float]:
        """(cpu seconds, RSS MiB) of the process, then (cpu seconds, RSS MiB) of its children."""
        if self._ps is not None:
            t = self._ps.cpu_times()
            kids = self._ps.children(recursive=True)
            kc = kr = 0.0
            for k in kids:
                with contextlib.suppress(Exception):
                    kt = k.cpu_times()
                    kc += kt.user + kt.system
                    kr += k.memory_info().rss / 2**20
            return t.user + t.system, self._ps.memory_info().rss / 2**20, kc, kr
        cpu, rss = self._one(self.pid)
        kc = kr = 0.0
        todo = self._children(self.pid)
        while todo:
            c = todo.pop()
            with contextlib.suppress(OSError, ValueError, IndexError):
                a, b = self._one(c)
                kc, kr = kc + a, kr + b
                todo += self._children(c)
        return cpu, rss, kc, kr


def machine_cpu() -> dict[str, int]:
    """Whole-machine jiffies from /proc/stat (user, nice, system, idle, ...)."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    vals = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    return dict(zip(names, (int(v) for v in vals)))


# -- the client ------------------------------------------------------------------------------------


@dataclass
class Stream:
    i: int
    key: str
    offset: int
    sent_at: list[float] = field(default_factory=list)  # per chunk: loop time it was handed to the socket
    windows: list[tuple[float, float, bool, bool, float | None]] = field(default_factory=list)
    # (t_end, arrival time, emotion_fresh, emotion_deferred, emotion_age_s)
    warnings: int = 0
    dropped_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    opened: float | None = None
    chunks: int = 0
    closed_at: float | None = None  # when CloseStream was sent


async def run_stream(st: Stream, url: str, tape: np.ndarray, chunk: int, start_at: float, stop_at: float,
                     loop: asyncio.AbstractEventLoop) -> None:
    import websockets

    await asyncio.sleep(max(0.0, start_at - loop.time()))
    try:
        async with websockets.connect(url, open_timeout=60, close_timeout=10, ping_interval=None,
                                      max_size=2**20) as sock:
            first = json.loads(await sock.recv())
            if first.get("type") != "session.created":
                st.errors.append(f"first message {first}")
                return
            st.opened = loop.time()

            async def receive() -> None:
                async for raw in sock:
                    m = json.loads(raw)
                    kind = m.get("type")
                    now = loop.time()
                    if kind == "prediction" and not m.get("partial"):  # not the flushed last piece
                        st.windows.append((m["t_end"], now, bool(m.get("emotion_fresh")),
                                           bool(m.get("emotion_deferred")), m.get("emotion_age_s")))
                    elif kind == "warning":
                        st.warnings += 1
                        st.dropped_s += float(m.get("dropped_s") or 0)
                    elif kind == "error":
                        st.errors.append(f"{m.get('code')}: {m.get('message')}")
                    elif kind == "finalized":
                        return

            rx = asyncio.create_task(receive())
            t0 = loop.time()
            n = int(tape.size)
            k = 0
            while True:
                target = t0 + k * chunk / SR
                if target >= stop_at:
                    break
                await asyncio.sleep(max(0.0, target - loop.time()))
                a = (st.offset + k * chunk) % n
                piece = tape[a : a + chunk]
                if piece.size < chunk:
                    piece = np.concatenate([piece, tape[: chunk - piece.size]])
                st.sent_at.append(loop.time())
                await sock.send(piece.tobytes())
                k += 1
                if rx.done():
                    break
            st.chunks = k
            st.closed_at = loop.time()
            with contextlib.suppress(Exception):
                await sock.send(json.dumps({"type": "CloseStream"}))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(rx, 15.0)
            rx.cancel()
    except Exception as e:  # connection refused/closed: recorded, the others go on
        st.errors.append(f"{type(e).__name__}: {e}")


async def loop_lag(stop_at: float, loop: asyncio.AbstractEventLoop, out: list[float]) -> None:
    while loop.time() < stop_at:
        t = loop.time()
        await asyncio.sleep(0.05)
        out.append(loop.time() - t - 0.05)


async def monitor(proc_pid: int, stop_at: float, loop: asyncio.AbstractEventLoop, out: list[dict[str, float]]) -> None:
    srv, me = ProcSampler(proc_pid), ProcSampler(os.getpid())
    c0, _, k0, _ = srv.sample()
    m0 = me.sample()[0]
    mc0 = machine_cpu()
    t0 = loop.time()
    while loop.time() < stop_at:
        await asyncio.sleep(1.0)
        t = loop.time()
        try:
            c1, rss, k1, krss = srv.sample()
        except (OSError, Exception):
            return
        m1, mrss = me.sample()[:2]
        mc1 = machine_cpu()
        total = sum(mc1.values()) - sum(mc0.values()) or 1
        out.append({"t": t, "server_cpu_pct": 100 * (c1 - c0) / (t - t0), "server_rss_mb": rss,
                    "children_cpu_pct": 100 * max(0.0, k1 - k0) / (t - t0), "children_rss_mb": krss,
                    "client_cpu_pct": 100 * (m1 - m0) / (t - t0), "client_rss_mb": mrss,
                    "machine_busy_pct": 100 * (1 - (mc1["idle"] - mc0["idle"]) / total),
                    "machine_nice_pct": 100 * (mc1["nice"] - mc0["nice"]) / total,
                    "load1": os.getloadavg()[0]})
        c0, k0, m0, mc0, t0 = c1, k1, m1, mc1, t


def pct(xs: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else float("nan")


def analyse(streams: list[Stream], chunk: int, phase: tuple[float, float]) -> dict[str, Any]:
    """Latency of every prediction whose completing chunk was sent in ``phase``; expected windows on the
    0.5 s grid. After dropped audio the server's windows sit on a shifted grid (the gap is a whole
    number of chunks), so windows are matched to chunks by their ``t_end``, not to the grid."""
    a, b = phase
    lat: list[float] = []
    fresh = deferred = counted = 0
    ages: list[float] = []
    expected = 0
    per_session: list[int] = []
    timeline: dict[int, list[float]] = {}
    w, h = round(WINDOW_S * SR), round(HOP_S * SR)
    for st in streams:
        sent = len(st.sent_at)
        expected += sum(1 for end in range(w, sent * chunk + 1, h) if a <= st.sent_at[-(-end // chunk) - 1] < b)
        n_sess = 0
        for t_end, arr, fr, de, age in st.windows:
            k = -(-round(t_end * SR) // chunk) - 1  # the chunk holding the window's last sample
            if not 0 <= k < sent or not a <= st.sent_at[k] < b:
                continue
            ms = (arr - st.sent_at[k]) * 1e3
            lat.append(ms)
            timeline.setdefault(int((st.sent_at[k] - a) // 10), []).append(ms)
            counted += 1
            n_sess += 1
            fresh += fr
            deferred += de
            if age is not None:
                ages.append(float(age))
        per_session.append(n_sess)
    missing = max(0, expected - counted)
    arr_lat = np.asarray(lat)
    return {
        "windows_expected": expected, "windows_received": counted, "windows_missing": missing,
        "latency_ms": {"p50": round(pct(arr_lat, 50), 1), "p90": round(pct(arr_lat, 90), 1),
                       "p99": round(pct(arr_lat, 99), 1), "p999": round(pct(arr_lat, 99.9), 1),
                       "max": round(float(arr_lat.max()), 1) if arr_lat.size else None,
                       "mean": round(float(arr_lat.mean()), 1) if arr_lat.size else None},
        "late_over_250ms": int((arr_lat > LATE_MS).sum()),
        "late_fraction": round(float((arr_lat > LATE_MS).mean()), 5) if arr_lat.size else None,
        "windows_per_session": {"min": min(per_session, default=0), "median": float(np.median(per_session)) if per_session else 0,
                                "max": max(per_session, default=0)},
        "emotion_fresh_fraction": round(fresh / counted, 4) if counted else None,
        "emotion_deferred_fraction": round(deferred / counted, 4) if counted else None,
        "emotion_age_s": {"median": round(pct(ages, 50), 2), "p95": round(pct(ages, 95), 2),
                          "max": round(max(ages), 2) if ages else None},
        "timeline_10s": [{"t0_s": k * 10, "n": len(v), "p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)}
                         for k, v in sorted(timeline.items())],
    }


async def drive(args: argparse.Namespace, tape: np.ndarray, base: str, keys: list[str], proc: subprocess.Popen[bytes]
                ) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    chunk = round(args.chunk_ms * SR / 1000)
    rng = random.Random(0)
    t_start = loop.time() + 1.0
    ramp_end = t_start + args.ramp
    stop_at = ramp_end + args.duration
    ws_base = base.replace("http://", "ws://")
    streams = []
    tasks = []
    for i in range(args.streams):
        st = Stream(i, keys[i % len(keys)], offset=int(i * tape.size / args.streams) // chunk * chunk)
        streams.append(st)
        start = t_start + args.ramp * i / max(1, args.streams) + rng.random() * args.chunk_ms / 1000
        url = f"{ws_base}/v1/stream?token={st.key}&encoding=pcm16&sample_rate={SR}"
        tasks.append(asyncio.create_task(run_stream(st, url, tape, chunk, start, stop_at, loop)))
    samples: list[dict[str, float]] = []
    lags: list[float] = []
    mon = asyncio.create_task(monitor(proc.pid, stop_at, loop, samples))
    lag = asyncio.create_task(loop_lag(stop_at, loop, lags))
    engine_at_start: dict[str, float] = {}
    engine_at_end: dict[str, float] = {}

    async def scrape(at: float, into: dict[str, float]) -> None:  # the engine's counters, sessions open
        await asyncio.sleep(max(0.0, at - loop.time()))
        into["t"] = loop.time()
        with contextlib.suppress(Exception):
            into.update(await asyncio.to_thread(engine_metrics, base))

    scrapers = [asyncio.create_task(scrape(ramp_end, engine_at_start)), asyncio.create_task(scrape(stop_at - 1.0, engine_at_end))]
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=args.ramp + args.duration + 120)
    for t in (mon, lag, *scrapers):
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    res = analyse(streams, chunk, (ramp_end, stop_at))
    res["engine_at_start"], res["engine_at_end"] = engine_at_start, engine_at_end
    if engine_at_start.get("windows") is not None and engine_at_end.get("windows") is not None:
        dt = engine_at_end["t"] - engine_at_start["t"]
        n = engine_at_end["windows"] - engine_at_start["windows"]
        in_phase = [s for s in samples if engine_at_start["t"] <= s["t"] <= engine_at_end["t"]]
        cpu_s = float(np.mean([s["server_cpu_pct"] for s in in_phase])) / 100.0 * dt if in_phase else 0.0
        res["throughput"] = {
            "windows_analysed_per_s": round(n / dt, 1), "windows_demanded_per_s": round(args.streams / HOP_S, 1),
            "server_cpu_ms_per_window": round(1e3 * cpu_s / n, 2) if n else None,
            "emotion_runs_per_s": round((engine_at_end.get("emotion_runs", 0)
                                         - engine_at_start.get("emotion_runs", 0)) / dt, 2),
        }
    steady = [s for s in samples if ramp_end <= s["t"] <= stop_at]
    rss = [s["server_rss_mb"] for s in steady]
    ts = [s["t"] - ramp_end for s in steady]
    slope = float(np.polyfit(ts, rss, 1)[0] * 60) if len(ts) > 10 else None
    half = len(rss) // 2
    res.update({
        "sessions_opened": sum(st.opened is not None for st in streams),
        "sessions_with_errors": sum(bool(st.errors) for st in streams),
        "errors": sorted({e for st in streams for e in st.errors})[:10],
        "warnings_audio_dropped": sum(st.warnings for st in streams),
        "audio_dropped_s": round(sum(st.dropped_s for st in streams), 2),
        "server": {
            "cpu_pct_mean": round(float(np.mean([s["server_cpu_pct"] for s in steady])), 1) if steady else None,
            "cpu_pct_p95": round(pct([s["server_cpu_pct"] for s in steady], 95), 1),
            "rss_mb_start": round(rss[0], 1) if rss else None, "rss_mb_end": round(rss[-1], 1) if rss else None,
            "rss_mb_max": round(max(rss), 1) if rss else None,
            "rss_mb_first_half_max": round(max(rss[:half]), 1) if half else None,
            "rss_mb_second_half_max": round(max(rss[half:]), 1) if half else None,
            "rss_slope_mb_per_min": None if slope is None else round(slope, 2),
            "asr_process_cpu_pct_mean": round(float(np.mean([s["children_cpu_pct"] for s in steady])), 1)
            if steady else None,
            "asr_process_rss_mb_max": round(max(s["children_rss_mb"] for s in steady), 1) if steady else None,
        },
        "client": {
            "cpu_pct_mean": round(float(np.mean([s["client_cpu_pct"] for s in steady])), 1) if steady else None,
            "loop_lag_ms_p99": round(pct(lags, 99) * 1e3, 1), "loop_lag_ms_max": round(max(lags, default=0) * 1e3, 1),
        },
        "machine_load": {
            "busy_pct_mean": round(float(np.mean([s["machine_busy_pct"] for s in steady])), 1) if steady else None,
            "nice_pct_mean": round(float(np.mean([s["machine_nice_pct"] for s in steady])), 1) if steady else None,
            "load1_mean": round(float(np.mean([s["load1"] for s in steady])), 2) if steady else None,
        },
        "timeline_server": [{"t_s": round(s["t"] - ramp_end, 1), "cpu_pct": round(s["server_cpu_pct"], 1),
                             "rss_mb": round(s["server_rss_mb"], 1), "asr_rss_mb": round(s["children_rss_mb"], 1),
                             "machine_nice_pct": round(s["machine_nice_pct"], 1)}
                            for s in samples[:: max(1, len(samples) // 60)]],
    })
    return res


def _load_text(r: dict[str, Any]) -> str:
    start = r.get("load_average_start")
    ml = r.get("machine_load") or {}
    if start is not None and start <= 1.5:
        who = "no other jobs running when it started"
    else:
        who = "other jobs running: they took part of the CPU"
    return (f"Load average at the start {start} ({who}); during the run {ml.get('load1_mean')} (this benchmark's "
            f"own server, client and keyword spotter included; {ml.get('nice_pct_mean')}% of the CPU time went to "
            "niced processes).")


def report_lines(r: dict[str, Any] | None) -> list[str]:
    """The docs/benchmarks.md section (used by make_report.py)."""
    out = section("Live streams under load: concurrent WebSocket sessions of real speech", r, "python benchmarks/load_streams.py")
    if r is None:
        return out
    lat, srv, eng = r["latency_ms"], r["server"], r.get("engine") or {}
    ok = lat["p99"] is not None and lat["p99"] < GOAL_P99_MS
    out.append(f"Method: `vocalis serve` in a subprocess on this machine; {r['streams']} WebSocket sessions "
               f"(pcm16, 16 kHz, {r['chunk_ms']:g} ms chunks at real time, as the web UI sends) of real speech "
               f"({r['tape_files']} RAVDESS + TESS clips, {r['tape_min']:.1f} min, each session from its own offset), "
               f"opened over {r['ramp_s']:g} s, then **{r['duration_s']:g} s measured** with all of them streaming. "
               "Server defaults: 2 s windows every 0.5 s, Silero VAD + scream detector on every window, the "
               "emotion model due every 2nd hop under the engine's latency budget, keyword spotting on scream-like "
               "windows. Latency = the prediction's arrival at the client - the send of the chunk that completed "
               "its window (client and server on the same 2 cores). The load generator runs in the same machine, "
               f"using {r['client']['cpu_pct_mean']}% of a core. {_load_text(r)}\n")
    out.append("| metric | result | goal |")
    out.append("|---|---|---|")
    out.append(f"| prediction latency p50 / p90 / p99 | **{lat['p50']:.0f} / {lat['p90']:.0f} / {lat['p99']:.0f} ms** "
               f"(p99.9 {lat['p999']:.0f}, max {lat['max']:.0f}) | p99 < {GOAL_P99_MS:.0f} ms: "
               f"{'**met**' if ok else '**not met**'} |")
    out.append(f"| windows received / expected (missing) | {r['windows_received']} / {r['windows_expected']} "
               f"({r['windows_missing']}); per session min {r['windows_per_session']['min']}, "
               f"median {r['windows_per_session']['median']:g} | no session starves |")
    out.append(f"| windows later than 250 ms | {r['late_over_250ms']} ({100 * (r['late_fraction'] or 0):.2f} %) | – |")
    out.append(f"| server CPU (100 % = one core) | {srv['cpu_pct_mean']} % mean, {srv['cpu_pct_p95']} % p95 (+ "
               f"{srv.get('asr_process_cpu_pct_mean')} % in the niced keyword-spotting process) | – |")
    out.append(f"| server RSS | {srv['rss_mb_start']} MiB at the start of the measured phase, {srv['rss_mb_end']} at "
               f"its end (max of 1st half {srv['rss_mb_first_half_max']}, of 2nd half {srv['rss_mb_second_half_max']}; "
               f"slope {srv['rss_slope_mb_per_min']} MiB/min); keyword-spotting process "
               f"{srv.get('asr_process_rss_mb_max')} MiB | bounded |")
    out.append(f"| emotion refreshed on / deferred on | {100 * (r['emotion_fresh_fraction'] or 0):.1f} % / "
               f"{100 * (r['emotion_deferred_fraction'] or 0):.1f} % of windows (configured: every 2nd); age of the "
               f"emotion shown: median {r['emotion_age_s']['median']} s, p95 {r['emotion_age_s']['p95']} s | "
               "degrades, says so |")
    out.append(f"| audio dropped by backpressure | {r['audio_dropped_s']} s ({r['warnings_audio_dropped']} warnings) "
               "| – |")
    if eng:
        out.append(f"| scream head batches (across sessions) | {int(eng.get('scream_batches', 0))} runs, mean "
                   f"{eng.get('scream_batch_mean', 0):.1f} windows, max {int(eng.get('scream_batch_max', 0))} | – |")
        out.append(f"| engine: emotion runs / deferred / forced by age; ASR runs / skipped; windows with the VAD shed | "
                   f"{int(eng.get('emotion_runs', 0))} / {int(eng.get('emotion_deferred', 0))} / "
                   f"{int(eng.get('emotion_forced', 0))}; {int(eng.get('asr_runs', 0))} / "
                   f"{int(eng.get('asr_skipped', 0))}; {int(eng.get('vad_shed', 0))}; final emotion budget "
                   f"{eng.get('emotion_rate', 0):.1f} runs/s | – |")
        out.append(f"| largest per-session audio queue | {eng.get('queued_s_max', 0):.2f} s of audio (bound "
                   f"{r.get('queue_bound_s', 3.0):g} s) | bounded |")
    out.append(f"| sessions opened / with errors | {r['sessions_opened']} / {r['sessions_with_errors']} | – |")
    tp = r.get("throughput")
    if tp:
        out.append(f"| windows analysed per second (demanded) | {tp['windows_analysed_per_s']} "
                   f"({tp['windows_demanded_per_s']}); emotion runs {tp['emotion_runs_per_s']}/s | – |")
        out.append(f"| server CPU per analysed window (VAD, scream, policy, WebSocket I/O, JSON; emotion as run) | "
                   f"{tp['server_cpu_ms_per_window']} ms | – |")
    out.append("")
    if tp and tp.get("server_cpu_ms_per_window"):
        cost = tp["server_cpu_ms_per_window"]
        client = (r["client"]["cpu_pct_mean"] or 0) / 100
        need = cost * tp["windows_demanded_per_s"] / 1e3
        asr = (srv.get("asr_process_cpu_pct_mean") or 0) / 100
        busy = srv["cpu_pct_mean"] / 100 + asr + client
        out.append(f"Reading. At {cost} ms of server CPU per window, the {r['streams']} streams' "
                   f"{tp['windows_demanded_per_s']:.0f} windows/s take {need:.2f} cores; with the keyword-spotting "
                   f"process ({asr:.2f}) and this load generator ({client:.2f}) that is {busy:.2f} of the 2 cores: "
                   "the emotion model takes what the danger path leaves (the engine's budget grows the emotion runs "
                   "while the window latency stays under its target), so the machine runs close to saturation by "
                   f"design and the emotion shown is {r['emotion_age_s']['median']} s old at the median "
                   f"({r['emotion_age_s']['p95']} s p95). The same code's runs differ with the host: this VM has slow "
                   "stretches (CPU stolen by the host), in which the emotion model is shed to a refresh every few "
                   "seconds and the latency comes in bursts (the rows of the table below with a p50 well over "
                   "60 ms). Under overload the engine behaves as designed: every session keeps getting "
                   "windows (none starves), the oldest queued audio would be dropped with a `warning` (queues never "
                   "exceed their bound), the emotion model is shed first, connections stay up and memory stays "
                   "flat. What was tried to close the gap and what is left is in the \"Live streams\" part of the "
                   "notes below.\n")
    extra = sorted(r.get("extra") or [], key=lambda x: x["streams"])
    if extra:
        out.append("Every kept run, same method and machine (`--tag`; `smoke` = the smoke check), by size and date:\n")
        out.append("| sessions | measured | date, commit | load average | p50 / p99 latency | windows missing | "
                   "server CPU | server RSS | emotion fresh / deferred | command |")
        out.append("|---:|---:|---|---:|---|---:|---:|---:|---|---|")
        for x in sorted([*extra, r], key=lambda x: (x["streams"], x["date"])):
            el, xs = x["latency_ms"], x["server"]
            ml = x.get("machine_load") or {}
            miss = 100 * x["windows_missing"] / max(1, x["windows_expected"])
            out.append(f"| {x['streams']} | {x['duration_s']:g} s | {x['date'][:16]}, `{x['commit']}` | "
                       f"{ml.get('load1_mean', '–')} | {el['p50']:.0f} / "
                       f"{el['p99']:.0f} ms | {miss:.1f} % | {xs['cpu_pct_mean']} % | {xs['rss_mb_end']} MiB | "
                       f"{100 * (x['emotion_fresh_fraction'] or 0):.0f} % / {100 * (x['emotion_deferred_fraction'] or 0):.0f} % "
                       f"| `{x['command'].strip()}` |")
        out.append("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--duration", type=float, default=300.0, help="measured seconds, all sessions streaming")
    ap.add_argument("--ramp", type=float, default=20.0, help="seconds over which the sessions open")
    ap.add_argument("--chunk-ms", type=float, default=250.0, help="the web UI sends 250 ms blocks")
    ap.add_argument("--files", type=int, default=400, help="clips in the speech tape")
    ap.add_argument("--env", action="append", default=[], help="extra VOCALIS_*=value for the server")
    ap.add_argument("--smoke", action="store_true",
                    help="a short check: writes results/load_streams_smoke.json instead of load_streams.json")
    ap.add_argument("--tag", default=None, help="writes results/load_streams_TAG.json (another size, say)")
    args = ap.parse_args()
    if not 1 <= args.streams <= 2000 or not 1 <= args.duration <= 3600 or not 0 <= args.ramp <= 600:
        sys.exit("--streams must be 1..2000, --duration 1..3600 s, --ramp 0..600 s")
    if not 10 <= args.chunk_ms <= 1000:
        sys.exit("--chunk-ms must be between 10 and 1000")
    if args.tag is not None and not re.fullmatch(r"[a-z0-9_-]{1,32}", args.tag):
        sys.exit("--tag must be 1-32 characters of a-z, 0-9, _ and -")
    extra_env = dict(e.split("=", 1) for e in args.env)
    t0 = time.perf_counter()
    tape, n_files = speech_tape(args.files)
    print(f"speech tape: {n_files} clips, {tape.size / SR / 60:.1f} min, decoded in {time.perf_counter() - t0:.1f} s",
          flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="vocalis-load-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load0 = os.getloadavg()[0]
    proc = start_server(port, tmp / "data", args.streams, extra_env)
    try:
        wait_healthy(base, proc)
        keys = register_users(base, min(USERS, args.streams))
        print(f"server pid {proc.pid} on {base}; {args.streams} sessions over {args.ramp:g} s, then "
              f"{args.duration:g} s measured", flush=True)
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        res = runner(drive(args, tape, base, keys, proc))
        res["engine"] = engine_metrics(base)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log_tail = (tmp / "server.log").read_text(errors="replace")[-2000:] if (tmp / "server.log").is_file() else ""
        shutil.rmtree(tmp, ignore_errors=True)
    result: dict[str, Any] = {
        "streams": args.streams, "duration_s": args.duration, "ramp_s": args.ramp, "chunk_ms": args.chunk_ms,
        "tape_files": n_files, "tape_min": round(tape.size / SR / 60, 2), "load_average_start": round(load0, 2),
        "load_average_end": round(os.getloadavg()[0], 2), "goal_p99_ms": GOAL_P99_MS,
        "queue_bound_s": float(extra_env.get("VOCALIS_STREAM_MAX_BACKLOG_S",
                                             StreamSettings.model_fields["max_backlog_s"].default)),
        **res, "server_log_tail": log_tail,
    }
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("timeline")}, indent=1))
    command = "python benchmarks/load_streams.py " + " ".join(sys.argv[1:])
    name = "load_streams_smoke" if args.smoke else f"load_streams_{args.tag}" if args.tag else "load_streams"
    path = save(name, result, command)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
