"""Malformed audio, one table, three doors: the library, the CLI and the API.

Every input in :data:`CASES` must give a clear :class:`~vocalis.errors.AudioError` from
:func:`vocalis.audio.io.load_audio`, an ``error: <file>: ...`` line from ``vocalis predict`` (exit 1,
no traceback) and a 400 ``invalid_audio`` from ``POST /v1/predict`` (never a 5xx), each within a
bounded time (``pytest.mark.timeout``: a hang fails the test instead of blocking the run).

The hostile files are built here: WAV headers with absurd fields, a WebM piece cut after its header
(a MediaRecorder chunk that is not the first) and ~2 MB Ogg/WebM Opus files that decode to hours
(120 ms packets of empty frames), which must stop at the duration cap without being decoded whole.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from vocalis.audio.io import load_audio
from vocalis.cli import app
from vocalis.errors import AudioError

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

SR = 16_000
CAP_S = 600  # the default cap of the library, the CLI and the service (max_audio_seconds)


# -- builders ---------------------------------------------------------------------------------------


def wav(rate: int = SR, channels: int = 1, data: bytes | None = None, bits: int = 16, fmt_tag: int = 1) -> bytes:
    """A canonical 44-byte-header WAV with any (even absurd) rate and channel count."""
    if data is None:
        data = np.zeros(SR * max(channels, 1) // 10, np.int16).tobytes()
    block = bits // 8 * max(channels, 1)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate % 2**32, rate * block % 2**32, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


@functools.cache
def good_wav() -> bytes:
    t = np.arange(SR) / SR
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def float_wav(x: np.ndarray, channels: int = 1) -> bytes:
    return wav(channels=channels, data=np.asarray(x).astype("<f4").tobytes(), bits=32, fmt_tag=3)


@functools.cache
def webm_after_first_chunk() -> bytes:
    """A real WebM/Opus recording from its first Cluster on: the header (EBML, Tracks) is missing."""
    data = _webm_clip()
    cluster = data.find(b"\x1f\x43\xb6\x75")  # Matroska Cluster id
    assert cluster > 0
    return data[cluster:]


def webm_header() -> bytes:
    """The first chunk of that recording without any Cluster: EBML header, Segment, Tracks."""
    data = _webm_clip()
    return data[: data.find(b"\x1f\x43\xb6\x75")]


@functools.cache
def _webm_clip() -> bytes:
    """Three seconds of a tone as WebM/Opus, as MediaRecorder makes it."""
    import av

    sr = 48_000
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * sr) / sr)).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as c:
        s = c.add_stream("libopus", rate=sr)
        s.layout = "mono"  # type: ignore[union-attr]
        for i in range(0, x.size, 960):
            fr = av.AudioFrame.from_ndarray(x[None, i : i + 960], format="flt", layout="mono")
            fr.sample_rate = sr
            for p in s.encode(fr):  # type: ignore[union-attr]
                c.mux(p)
        for p in s.encode(None):  # type: ignore[union-attr]
            c.mux(p)
    return buf.getvalue()


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _ogg_crc_table()


def _ogg_page(packets: list[bytes], granule: int, seq: int, flags: int = 0) -> bytes:
    lacing: list[int] = []
    for p in packets:
        lacing += [255] * (len(p) // 255) + [len(p) % 255]
    page = bytearray(b"OggS" + struct.pack("<BBqIIIB", 0, flags, granule, 0x766F63, seq, 0, len(lacing))
                     + bytes(lacing) + b"".join(packets))
    crc = 0
    for b in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ b) & 0xFF]
    page[22:26] = struct.pack("<I", crc)
    return bytes(page)


@functools.cache
def opus_hours_ogg(size: int = 2_000_000) -> bytes:
    """An Ogg Opus file of ``size`` bytes that decodes to hours.

    Each packet is 2 bytes: a TOC (SILK narrow-band 20 ms, code 3) and a count of 6 empty CBR
    frames, i.e. 120 ms that the decoder conceals; 255 of them per page.
    """
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48_000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 7) + b"vocalis" + struct.pack("<I", 0)
    pages = [_ogg_page([head], 0, 0, flags=2), _ogg_page([tags], 0, 1)]
    packet = bytes([(1 << 3) | 3, 6])
    total, granule, seq = sum(map(len, pages)), 0, 2
    while total < size:
        granule += 255 * 5760  # 120 ms at 48 kHz per packet
        pages.append(_ogg_page([packet] * 255, granule, seq))
        total += len(pages[-1])
        seq += 1
    return b"".join(pages)


@functools.cache
def opus_hours_webm() -> bytes:
    """The same empty Opus packets remuxed into WebM (~2 MB, ~8 hours): only PyAV reads it."""
    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(opus_hours_ogg(700_000)), "r") as src, av.open(out, "w", format="webm") as dst:
        s = src.streams.audio[0]
        o = dst.add_stream_from_template(s)
        for p in src.demux(s):
            if p.dts is not None:
                p.stream = o
                dst.mux(p)
    return out.getvalue()


# -- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], bytes]
    match: str  # regex the message must contain
    suffix: str = ".wav"
    content_type: str = "audio/wav"


CASES = [
    Case("truncated-header", lambda: good_wav()[:30], "WAV is truncated"),
    Case("truncated-data", lambda: good_wav()[: len(good_wav()) // 2], "WAV is truncated.*declares 32000 bytes"),
    Case("rate-1Hz", lambda: wav(rate=1), "sample_rate=1 must be between"),
    Case("rate-4e9Hz", lambda: wav(rate=4_000_000_000), "sample_rate=4000000000 must be between"),
    Case("channels-0", lambda: wav(channels=0), "channels=0 must be between"),
    Case("channels-1024", lambda: wav(channels=1024), "channels=1024 must be between"),
    Case("nan-samples", lambda: float_wav(np.full(SR, np.nan)), r"16000 non-finite samples \(NaN/Inf\)"),
    Case("inf-samples", lambda: float_wav(np.r_[np.zeros(SR - 1), np.inf]), r"1 non-finite samples"),
    Case("float32-max-stereo", lambda: float_wav(np.tile([3e38, 3e38, -3e38, -3e38], SR // 2), channels=2),
         "non-finite|overflow"),
    Case("empty", lambda: b"", "empty"),
    Case("random-bytes", lambda: np.random.default_rng(8).bytes(4096), "cannot decode audio",
         ".bin", "application/octet-stream"),
    Case("webm-chunk-after-first", webm_after_first_chunk, "cannot decode audio", ".webm", "audio/webm"),
    Case("opus-2MB-hours-ogg", opus_hours_ogg, f"must be at most max_duration={CAP_S}s", ".opus", "audio/ogg"),
    Case("opus-2MB-hours-webm", opus_hours_webm, f"must be at most max_duration={CAP_S}s", ".webm", "audio/webm"),
]
IDS = [c.id for c in CASES]


def test_the_hostile_files_are_what_they_claim() -> None:
    """The builders really make what the table says (a 2 MB file that would decode to hours, ...)."""
    import av

    big = opus_hours_ogg()
    assert 1_900_000 < len(big) < 2_100_000
    with sf.SoundFile(io.BytesIO(big)) as f:
        assert f.frames / f.samplerate > 3600 * 20  # ~21 hours declared by the last granule position
    webm = opus_hours_webm()
    assert 1_500_000 < len(webm) < 2_500_000
    with av.open(io.BytesIO(webm)) as c:  # decodable from the start: a cap, not an error, stops it
        frame = next(c.decode(audio=0))
        assert frame.sample_rate == 48_000
        assert c.duration is not None and c.duration / 1e6 > 3600 * 5
    assert webm_after_first_chunk()[:4] == b"\x1f\x43\xb6\x75"
    assert len(good_wav()) == 44 + 2 * SR


# -- the library --------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_library_raises_audio_error(case: Case) -> None:
    with pytest.raises(AudioError, match=case.match) as e:
        load_audio(case.build())
    assert str(e.value).startswith("<")  # names the source (here the byte count)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_library_names_the_file(case: Case, tmp_path: Path) -> None:
    p = tmp_path / f"bad{case.suffix}"
    p.write_bytes(case.build())
    with pytest.raises(AudioError, match=case.match) as e:
        load_audio(p)
    assert str(e.value).startswith(str(p))
    with open(p, "rb") as f, pytest.raises(AudioError, match=case.match):  # a file object too
        load_audio(f)


def test_decoding_stops_at_the_cap_not_at_the_end() -> None:
    """A smaller cap stops sooner: the decoder never reads the hours behind it."""
    for data in (opus_hours_ogg(), opus_hours_webm()):
        with pytest.raises(AudioError, match="max_duration=5s"):
            load_audio(data, max_duration=5)


# -- the CLI ------------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def bad_file(tmp_path: Path) -> Callable[[Case], Path]:
    def _write(case: Case) -> Path:
        p = tmp_path / f"{case.id}{case.suffix}"
        p.write_bytes(case.build())
        return p

    return _write


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cli_prints_one_clean_error(case: Case, bad_file: Callable[[Case], Path]) -> None:
    p = bad_file(case)
    res = runner.invoke(app, ["predict", str(p), "--json"])
    assert res.exit_code == 1, (res.exit_code, res.output, res.exception)
    assert isinstance(res.exception, SystemExit)  # no exception escaped the command
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {p}"), err
    assert re.search(case.match, err[0]), err[0]
    assert res.stdout == ""


@pytest.mark.timeout(120)
def test_cli_process_reports_every_bad_file_without_traceback(tmp_path: Path) -> None:
    """One real ``vocalis predict`` process over the whole table (plus one good clip): exit 1, one line each."""
    paths = []
    for case in CASES:
        p = tmp_path / f"{case.id}{case.suffix}"
        p.write_bytes(case.build())
        paths.append(p)
    good = tmp_path / "good.wav"
    good.write_bytes(good_wav())
    r = subprocess.run([sys.executable, "-m", "vocalis", "predict", *map(str, paths), str(good), "--json"],
                       capture_output=True, text=True, timeout=100)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == [str(p) for p in paths], lines
    assert all(line.startswith("error: ") for line in lines)
    assert '"file": "' + str(good) in r.stdout  # the good file was still predicted


# -- the API ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    pytest.importorskip("fastapi", reason="the API needs the 'serve' extra")
    from fastapi.testclient import TestClient

    from tests.service.conftest import make_settings, register
    from vocalis.service.app import create_app

    client = TestClient(create_app(make_settings(tmp_path_factory.mktemp("api"))), raise_server_exceptions=False)
    with client:
        yield client, register(client).headers


def _assert_invalid_audio(r: Any, case: Case) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == "invalid_audio", body
    assert re.search(case.match, body["error"]["message"]), body
    assert "Traceback" not in r.text


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_api_raw_body_is_a_400(case: Case, api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    r = client.post("/v1/predict", headers={**headers, "content-type": case.content_type}, content=case.build())
    _assert_invalid_audio(r, case)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_api_multipart_is_a_400(case: Case, api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    r = client.post("/v1/predict", headers=headers,
                    files={"file": (f"clip{case.suffix}", case.build(), case.content_type)})
    _assert_invalid_audio(r, case)


def test_api_still_serves_after_the_table(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    r = client.post("/v1/predict", headers={**headers, "content-type": "audio/wav"}, content=good_wav())
    assert r.status_code == 200 and r.json()["duration_s"] == pytest.approx(1.0)


STREAM_CASES = [c for c in CASES if c.id in ("webm-chunk-after-first", "random-bytes", "truncated-header")]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", STREAM_CASES, ids=[c.id for c in STREAM_CASES])
def test_stream_closes_4000_on_a_container_it_cannot_decode(case: Case,
                                                            api: tuple[TestClient, dict[str, str]]) -> None:
    """The live stream's webm decoder: ``error invalid_audio`` then close 4000, at the latest when the
    client ends the stream (a demuxer may wait for more bytes to resynchronise on)."""
    from starlette.websockets import WebSocketDisconnect

    from tests.service.test_stream import FakePredictor

    client, headers = api
    client.app.state.stream_predictor_factory = lambda config: FakePredictor()  # type: ignore[attr-defined]
    key = headers["Authorization"].removeprefix("Bearer ")
    seen = []
    with client.websocket_connect(f"/v1/stream?token={key}&encoding=webm") as sock:
        assert sock.receive_json()["type"] == "session.created"
        sock.send_bytes(case.build())
        sock.send_json({"type": "CloseStream"})
        with pytest.raises(WebSocketDisconnect) as closed:
            for _ in range(20):
                seen.append(sock.receive_json())
    assert closed.value.code == 4000, seen
    assert seen[-1]["type"] == "error" and seen[-1]["code"] == "invalid_audio", seen
    assert seen[-1]["message"] == "webm stream cannot be decoded: Invalid data found when processing input"


@pytest.mark.timeout(30)
def test_stream_closes_4000_on_bytes_that_never_decode(api: tuple[TestClient, dict[str, str]]) -> None:
    """A valid header, then endless EBML Void elements (which a demuxer skips without an error): cut
    off by the bytes-per-second-of-audio rule instead of feeding the decoder thread for ever."""
    from starlette.websockets import WebSocketDisconnect

    from tests.service.test_stream import FakePredictor
    from vocalis.service import ws

    client, headers = api
    client.app.state.stream_predictor_factory = lambda config: FakePredictor()  # type: ignore[attr-defined]
    key = headers["Authorization"].removeprefix("Bearer ")
    void = b"\xec" + b"\x01" + (16384).to_bytes(7, "big") + bytes(16384)  # Void, 8-byte size
    seen = []
    with client.websocket_connect(f"/v1/stream?token={key}&encoding=webm") as sock:
        assert sock.receive_json()["type"] == "session.created"
        sock.send_bytes(webm_header())
        with pytest.raises(WebSocketDisconnect) as closed:
            for _ in range(int(ws.CONTAINER_BYTES_PER_S * ws.CONTAINER_SLACK_S / len(void)) + 2):
                sock.send_bytes(void)
            for _ in range(20):
                seen.append(sock.receive_json())
    assert closed.value.code == 4000, seen
    assert seen[-1]["code"] == "invalid_audio", seen
    assert "decoded to 0.0 s of audio" in seen[-1]["message"], seen
