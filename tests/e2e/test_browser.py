"""The web UI in a real Chromium: its fake microphone plays a corpus clip into the live monitor.

* scream clip -> predictions, rising risk, a countdown, then one alert: the fake Twilio receives
  exactly one SMS and one call, and the fake camera's video is uploaded as evidence;
* quiet clip -> predictions but no alert in the same time.

Screenshots go to ``$VOCALIS_SCREENSHOTS_DIR`` when set (``docs/screenshots`` is made that way).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.conftest import CHROMIUM, CHROMIUM_FLAGS, LiveServer, corpus_wav, screaming_wav
from vocalis.audio.vad import silero_onnx_path
from vocalis.storage.tables import Alert, Evidence

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


def _account(server: LiveServer, email: str, phone: str) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/v1/users", json={"email": email, "password": PASSWORD, "name": "Ann"})
        assert r.status_code == 201, r.text
        body = r.json()
        headers = {"Authorization": f"Bearer {body['api_key']['key']}"}
        r = c.post("/v1/contacts", headers=headers, json={"name": "Mum", "phone": phone, "channels": ["sms", "call"]})
        assert r.status_code == 201, r.text
        return {"id": body["user"]["id"], "email": email, "headers": headers, "contact": r.json()}


@pytest.fixture
def shots() -> Path | None:
    d = os.environ.get("VOCALIS_SCREENSHOTS_DIR")
    if not d:
        return None
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    return p


@contextmanager
def _browser(clip: Path, init_script: str | None = None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={clip}"])
        context = browser.new_context(viewport={"width": 1100, "height": 900}, permissions=["geolocation"],
                                      geolocation={"latitude": 48.8566, "longitude": 2.3522, "accuracy": 25})
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors  # type: ignore[attr-defined]
        received: list[str | bytes] = []
        page.on("websocket", lambda sock: sock.on("framereceived", lambda f: received.append(f)))
        try:
            yield page
        except Exception as e:  # what the server said, to tell a slow server from a wrong decision
            e.add_note("stream messages: " + _summary(received))
            e.add_note(f"page errors: {errors}; page state: " + str(page.evaluate(
                "[document.querySelector('#mon-state').textContent, String(window.vocalis.mon.ws && "
                "window.vocalis.mon.ws.readyState)]")))
            raise
        finally:
            context.close()
            browser.close()


def _summary(frames: list[str | bytes], last: int = 60) -> str:
    out = []
    for f in frames[-last:]:
        try:
            m = json.loads(f)
        except ValueError:
            out.append("?")
            continue
        if m.get("type") == "prediction":
            out.append(f"p{m.get('t_end')}:{m.get('risk')}")
        else:
            out.append(f"{m.get('type')}{'@' + str(m['t']) if 't' in m else ''}:{m.get('remaining', m.get('code', ''))}")
    return f"{len(frames)} received, the last {len(out)}: " + " ".join(out)


def _login(page: Any, server: LiveServer, email: str) -> None:
    page.goto(server.url + "/")
    page.fill("#login-form input[name=email]", email)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#page-monitor:not([hidden])")


def _for_phone(server: LiveServer, phone: str) -> tuple[list[Any], list[Any]]:
    tw = server.twilio
    return [m for m in tw.messages if m["to"] == phone], [c for c in tw.calls if c["to"] == phone]


@contextmanager
def _monitoring(server: LiveServer, clip: Path, email: str, phone: str, *, evidence: bool = False,
                init_script: str | None = None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A user with one contact (``phone``), logged in, monitoring ``clip`` as the microphone (evidence
    recording opted in when ``evidence``; ``init_script`` runs before the page's own): yields (page,
    account); the browser closes after."""
    acct = _account(server, email, phone)
    with _browser(clip, init_script) as page:
        _login(page, server, acct["email"])
        if evidence:
            page.check("#ev-optin")  # evidence is recorded only when the user opts in
        page.click("#mon-start")
        yield page, acct


def _alerts(server: LiveServer, acct: dict[str, Any]) -> list[Alert]:
    with server.app.state.session_factory() as s:
        return list(s.scalars(select(Alert).where(Alert.user_id == acct["id"])).all())


def test_scream_raises_one_alert_with_evidence(live_server: LiveServer, tmp_path: Path, shots: Path | None) -> None:
    t0 = time.monotonic()
    clip = screaming_wav(tmp_path / "screams.wav")
    phone = "+33611111111"
    with _monitoring(live_server, clip, "scream@example.org", phone, evidence=True) as (page, acct):
        page.wait_for_function("Number(document.querySelector('#live-count').textContent) >= 2")
        assert page.text_content("#live-label") not in ("", "–")
        page.wait_for_function("document.querySelector('#risk-meter').value >= 0.3")
        page.wait_for_selector("#countdown:not([hidden])")
        remaining = int(page.text_content("#cd-remaining") or "0")
        assert 1 <= remaining <= 3
        if shots:
            page.screenshot(path=str(shots / "monitor-countdown.png"), full_page=True)
        page.wait_for_selector("#alert-box:not([hidden])", timeout=15_000)
        assert page.is_hidden("#countdown")
        alert_id = page.get_attribute("#alert-id", "data-alert-id") or ""
        assert (page.text_content("#alert-id") or "").startswith("Raised at ")
        # the relay delivers through the fake Twilio; the UI shows each delivery's status
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and [len(x) for x in _for_phone(live_server, phone)] != [1, 1]:
            time.sleep(0.2)
        page.wait_for_selector("#alert-deliveries li[data-channel=sms][data-status=sent]")
        page.wait_for_selector("#alert-deliveries li[data-channel=call][data-status=sent]")
        assert (page.text_content("#alert-deliveries li[data-channel=sms]") or "").startswith("Mum (sms)")
        page.wait_for_selector("#ev-stop:not([hidden])")
        page.wait_for_timeout(1500)  # some video
        page.click("#ev-stop")
        page.wait_for_selector("#ev-state[data-uploaded]", timeout=15_000)
        if shots:
            page.screenshot(path=str(shots / "monitor-alert.png"), full_page=True)
        page.click("#mon-stop")
        page.wait_for_function("document.querySelector('#mon-state').textContent === 'stopped'")
        page.wait_for_timeout(2_500)  # the alert's delivery polling (every 2 s) must not overwrite it
        assert page.text_content("#mon-state") == "stopped"
        # the other pages, for the screenshots and a smoke check
        page.click("nav a[data-page=contacts]")
        page.wait_for_selector("#contacts-table tbody tr td:has-text('Mum')")
        if shots:
            page.screenshot(path=str(shots / "contacts.png"), full_page=True)
        page.click("nav a[data-page=history]")
        page.wait_for_selector("#history-table tbody tr td:has-text('stream')")
        if shots:
            page.screenshot(path=str(shots / "history.png"), full_page=True)
        page.click("nav a[data-page=analyse]")
        page.set_input_files("#upload", str(clip))
        page.wait_for_selector("#analyse-result:not([hidden])")
        page.wait_for_function("document.querySelectorAll('#an-bars .bar').length > 1")
        # the page marks the label as a guess exactly when the VAD hears no speech in the clip, as the API does
        from vocalis.audio.io import load_audio
        from vocalis.audio.vad import speech_presence

        heard = speech_presence(load_audio(clip)).detected
        assert page.is_hidden("#an-speech") == (heard is not False)
        if shots:
            page.screenshot(path=str(shots / "analyse.png"), full_page=True)
        page.click("nav a[data-page=history]")  # the upload is in the history, marked the same way
        page.wait_for_selector("#history-table tbody tr td:has-text('upload')")
        assert ("(no speech: a guess)" in (page.text_content("#history-table tbody tr") or "")) == (heard is False)
        assert page.errors == []  # type: ignore[attr-defined]
    time.sleep(1.0)  # nothing more is sent later
    sms, calls = _for_phone(live_server, phone)
    assert len(sms) == 1 and len(calls) == 1, (sms, calls)
    assert "Vocalis" in (sms[0]["body"] or "") or sms[0]["body"]
    with live_server.app.state.session_factory() as s:
        alerts = list(s.scalars(select(Alert).where(Alert.user_id == acct["id"])).all())
        assert [(a.id, a.source) for a in alerts] == [(alert_id, "stream")]
        assert alerts[0].status in ("confirmed", "delivered")
        assert alerts[0].latitude == pytest.approx(48.8566) and alerts[0].longitude == pytest.approx(2.3522)
        ev = list(s.scalars(select(Evidence).where(Evidence.alert_id == alert_id)).all())
    assert len(ev) == 1 and ev[0].content_type.startswith("video/webm") and ev[0].size_bytes > 1000
    stored = live_server.app.state.settings.evidence_root / ev[0].path
    assert stored.is_file() and stored.stat().st_size == ev[0].size_bytes
    assert time.monotonic() - t0 < 60


# The network delivers the server's `countdown` message for 2 s left 1.5 s late (the rest on time).
LATE_COUNTDOWN = """
window.cdSeen = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  set onmessage(fn) {
    super.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === 'countdown' && m.remaining > 1.5 && m.remaining < 2.5) setTimeout(() => fn(ev), 1500);
      else fn(ev);
    };
  }
};
document.addEventListener('DOMContentLoaded', () => {
  const el = document.querySelector('#cd-remaining');
  new MutationObserver(() => window.cdSeen.push(el.textContent))
    .observe(el, {childList: true, characterData: true, subtree: true});
});
"""


def test_countdown_digits_only_go_down_when_a_message_is_late(live_server: LiveServer, tmp_path: Path) -> None:
    """The page counts down on its own clock between the server's once-a-second messages; a late
    message used to put the digit back up (3, 2, 1, 2, 0)."""
    clip = screaming_wav(tmp_path / "screams.wav")
    with _monitoring(live_server, clip, "late@example.org", "+33677777777",
                     init_script=LATE_COUNTDOWN) as (page, _):
        page.wait_for_selector("#countdown:not([hidden])")
        page.wait_for_selector("#alert-box:not([hidden])", timeout=15_000)
        page.wait_for_timeout(300)  # the late message comes after the alert has hidden the countdown
        seen = [int(d) for d in page.evaluate("window.cdSeen")]
        assert page.errors == []  # type: ignore[attr-defined]
    assert seen[0] == 3 and {2, 1} <= set(seen) <= {3, 2, 1, 0}, seen  # 0 only if the alert is later
    assert seen == sorted(seen, reverse=True), seen


def test_stopping_during_the_countdown_still_alerts(live_server: LiveServer, tmp_path: Path) -> None:
    """Only Cancel stops an alert: the user (or whoever holds the phone) pressing Stop, closing the
    socket, during the countdown does not; the server runs it out and the page follows the alert."""
    clip = screaming_wav(tmp_path / "screams.wav")
    phone = "+33633333333"
    with _monitoring(live_server, clip, "stop@example.org", phone) as (page, acct):
        page.wait_for_selector("#countdown:not([hidden])")
        page.click("#mon-stop")
        page.wait_for_function("document.querySelector('#mon-state').textContent === 'stopped'")
        page.wait_for_selector("#alert-box:not([hidden])", timeout=15_000)
        assert page.is_hidden("#countdown")
        page.wait_for_selector("#alert-deliveries li[data-channel=sms][data-status=sent]", timeout=15_000)
        page.wait_for_function("document.querySelector('#alert-title').textContent.startsWith('Alert sent')")
        assert page.errors == []  # type: ignore[attr-defined]
    sms, calls = _for_phone(live_server, phone)
    assert len(sms) == 1 and len(calls) == 1, (sms, calls)
    assert [a.status for a in _alerts(live_server, acct)] in (["confirmed"], ["delivered"])


def test_cancel_after_stop_still_cancels(live_server: LiveServer, tmp_path: Path) -> None:
    """Stop then Cancel during the countdown: the socket is closing, so Cancel must go over REST
    (it used to be sent on the closing socket, dropped, and the alert went out)."""
    clip = screaming_wav(tmp_path / "screams.wav")
    phone = "+33644444444"
    with _monitoring(live_server, clip, "stopcancel@example.org", phone) as (page, acct):
        page.wait_for_selector("#countdown:not([hidden])")
        page.click("#mon-stop")
        page.click("#cd-cancel")
        page.wait_for_selector("#countdown", state="hidden")
        page.wait_for_timeout(6_000)  # past the countdown's end: nothing may be sent
        assert page.is_hidden("#alert-box")
        assert page.errors == []  # type: ignore[attr-defined]
    assert _for_phone(live_server, phone) == ([], [])
    assert [a.status for a in _alerts(live_server, acct)] == ["cancelled"]


def test_signing_out_stops_monitoring_and_forgets_the_login(live_server: LiveServer, tmp_path: Path) -> None:
    clip = corpus_wav("quiet_background", 6, tmp_path / "quiet.wav")
    with _monitoring(live_server, clip, "signout@example.org", "+33655555555") as (page, _):
        page.wait_for_function("Number(document.querySelector('#live-count').textContent) >= 1")
        page.click("#logout")
        page.wait_for_selector("#page-login:not([hidden])")
        page.wait_for_function("window.vocalis.mon.ws === null && window.vocalis.mon.stream === null")
        assert page.evaluate("getComputedStyle(document.querySelector('#nav')).display") == "none"
        assert page.input_value("#login-form input[name=email]") == ""
        assert page.input_value("#login-form input[name=password]") == ""
        assert page.errors == []  # type: ignore[attr-defined]


def test_the_monitor_reconnects_by_itself_when_the_server_ends_the_session(
        live_server: LiveServer, tmp_path: Path) -> None:
    """A session the server ends (here its length cap, 4033; a restart, 1001, or a network drop
    alike) must not end monitoring: the page reconnects with the microphone still on and analyses
    on; only Stop stops it (it used to stop with a toast, leaving the user unprotected)."""
    clip = corpus_wav("quiet_background", 6, tmp_path / "quiet.wav")
    before = live_server.app.state.stream_settings
    live_server.app.state.stream_settings = before.model_copy(update={"max_session_s": 4.0})
    try:
        with _monitoring(live_server, clip, "reconnect@example.org", "+33688888888") as (page, _):
            page.wait_for_function("document.querySelector('#mon-state').textContent.startsWith('reconnecting')",
                                   timeout=15_000)
            assert "4033" in (page.text_content("#mon-state") or "")
            assert page.evaluate("window.vocalis.mon.stream !== null")  # the microphone stays on
            page.wait_for_function("document.querySelector('#mon-state').textContent === 'listening'")
            seen = int(page.text_content("#live-count") or "0")
            page.wait_for_function(f"Number(document.querySelector('#live-count').textContent) > {seen}")
            page.click("#mon-stop")
            page.wait_for_function("document.querySelector('#mon-state').textContent === 'stopped'")
            page.wait_for_timeout(2_500)  # no reconnect after Stop
            assert page.text_content("#mon-state") == "stopped" and page.evaluate("window.vocalis.mon.ws === null")
            assert page.errors == []  # type: ignore[attr-defined]
    finally:
        live_server.app.state.stream_settings = before


def test_quiet_clip_raises_no_alert(live_server: LiveServer, tmp_path: Path) -> None:
    t0 = time.monotonic()
    clip = corpus_wav("quiet_background", 6, tmp_path / "quiet.wav")
    phone = "+33622222222"
    with _monitoring(live_server, clip, "quiet@example.org", phone) as (page, acct):
        page.wait_for_function("Number(document.querySelector('#live-count').textContent) >= 2")
        # as long as the scream run needed for its alert (start ~2.5 s + 3 s countdown), and more
        page.wait_for_timeout(10_000)
        count = int(page.text_content("#live-count") or "0")
        assert count >= 15  # windows kept coming (one per 0.5 s)
        risks = page.evaluate("window.vocalis.mon.risk")
        assert page.is_hidden("#countdown") and page.is_hidden("#alert-box"), (page.get_attribute("#alert-id", "data-alert-id"), risks)
        assert float(page.text_content("#risk-value") or "1") < 0.3
        # no made-up mood for a quiet room: the label says "no speech" exactly when Silero hears none
        label, voice = page.evaluate("[document.querySelector('#live-label').textContent, "
                                     "Number(document.querySelector('#live-voice').textContent)]")
        assert (label == "no speech") == (voice < 0.5) or abs(voice - 0.5) <= 0.005, (label, voice)
        if silero_onnx_path() is not None:
            assert label == "no speech", (label, voice)  # this background holds no speech
        page.click("#mon-stop")
        page.wait_for_function("document.querySelector('#mon-state').textContent === 'stopped'")
        assert page.errors == []  # type: ignore[attr-defined]
    assert _for_phone(live_server, phone) == ([], [])
    assert _alerts(live_server, acct) == []
    assert time.monotonic() - t0 < 60


def test_wellbeing_tab_enrols_checks_in_and_shows_the_trend(live_server: LiveServer, tmp_path: Path,
                                                            shots: Path | None) -> None:
    """The Wellbeing page: enrol two moods (personalisation switches on), check in, see trend and
    disclaimer; a recording without speech is refused with the reason."""
    import numpy as np
    import soundfile as sf

    from tests.conftest import corpus_dir

    acct = _account(live_server, "wb@example.org", "+15550001111")
    actor = corpus_dir("ravdess") / "Actor_01"  # spoken: happy (03) and sad (04)
    clips = [str(sorted(actor.glob(f"03-01-{code}-*.flac"))[0]) for code in ("03", "04")]
    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 200.0 * np.arange(16_000) / 16_000)).astype(np.float32), 16_000)
    quiet = corpus_wav("quiet_background", 1, tmp_path / "quiet.wav")
    with _browser(quiet) as page:
        _login(page, live_server, acct["email"])
        page.click("nav a[data-page=wellbeing]")
        page.wait_for_selector("#page-wellbeing:not([hidden])")
        page.wait_for_function("document.querySelector('#wb-enrol-label').options.length > 0")
        page.select_option("#wb-enrol-label", "happy")
        page.set_input_files("#wb-enrol-upload", clips[0])
        page.wait_for_function("document.querySelector('#wb-counts').textContent.includes('happy 1')")
        page.select_option("#wb-enrol-label", "sad")
        page.set_input_files("#wb-enrol-upload", clips[1])
        page.wait_for_function("document.querySelector('#wb-counts').textContent.includes('personalised')")
        page.wait_for_load_state("networkidle")
        if silero_onnx_path() is not None:
            page.set_input_files("#wb-upload", str(tone))
            page.wait_for_selector("#toast .msg:has-text('no speech heard')")
        before = page.get_attribute("#wb-trend", "src") or ""
        page.set_input_files("#wb-upload", clips[0])
        page.wait_for_selector("#wb-result:not([hidden])")
        assert page.text_content("#wb-label")
        page.wait_for_selector("#wb-trend:not([hidden])")
        # the trend is re-fetched after the check-in: wait for the new image, not the old one
        page.wait_for_function("([old]) => { const im = document.querySelector('#wb-trend');"
                               " return im.src && im.src !== old && im.complete && im.naturalWidth > 0; }",
                               arg=[before])
        page.wait_for_load_state("networkidle")
        assert "not a medical device" in (page.text_content("#wb-disclaimer") or "").lower()
        if shots:
            page.screenshot(path=str(shots / "wellbeing.png"), full_page=True)
        assert page.errors == []  # type: ignore[attr-defined]
    with httpx.Client(base_url=live_server.url, timeout=10) as c:
        h = c.get("/v1/wellbeing/history", headers=acct["headers"]).json()
    assert h["n"] == 1
