// Vocalis web UI: plain ES module, no build step. Talks to the REST API (/v1/...) and /v1/stream.
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const PAGES = ['analyse', 'monitor', 'contacts', 'history', 'wellbeing'];
const EMOTION_ORDER = ['neutral', 'calm', 'happy', 'surprise', 'sad', 'angry', 'fear', 'disgust'];

// ---------------------------------------------------------------- auth + API
const auth = {
  get expiresAt() { return Number(localStorage.getItem('vocalis.expires') || 0); },
  get token() {
    const t = localStorage.getItem('vocalis.token');
    return t && Date.now() < this.expiresAt ? t : null;
  },
  set(tok) {
    localStorage.setItem('vocalis.token', tok.access_token);
    localStorage.setItem('vocalis.expires', String(Date.now() + (tok.expires_in - 30) * 1000));
  },
  clear() { localStorage.removeItem('vocalis.token'); localStorage.removeItem('vocalis.expires'); },
};

// A signed-in page renews its token before it runs out (the live monitor runs for hours on 1-hour
// tokens); the server allows that for 24 h after the sign-in, then the page asks to sign in again.
setInterval(async () => {
  if (!auth.token || auth.expiresAt - Date.now() > 10 * 60 * 1000) return;
  try {
    const r = await fetch('/v1/auth/refresh', { method: 'POST', headers: { Authorization: `Bearer ${auth.token}` } });
    if (r.ok) auth.set(await r.json());
  } catch { /* offline: the next minute tries again */ }
}, 60 * 1000);

async function api(path, { method = 'GET', json, body, headers = {} } = {}) {
  const h = { ...headers };
  if (auth.token) h.Authorization = `Bearer ${auth.token}`;
  if (json !== undefined) { h['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
  const r = await fetch(path, { method, headers: h, body });
  if (r.status === 401 && path !== '/v1/auth/token') { auth.clear(); route(); }
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `${r.status} ${r.statusText}`);
  return data;
}

function toast(msg) {
  const el = document.createElement('div');
  el.className = 'msg'; el.textContent = msg;
  $('#toast').append(el);
  setTimeout(() => el.remove(), 5000);
}

// ---------------------------------------------------------------- routing
function route() {
  const signedIn = !!auth.token;
  let page = location.hash.replace('#', '') || 'monitor';
  if (!signedIn) page = 'login';
  else if (!PAGES.includes(page)) page = 'monitor';
  $('#nav').hidden = !signedIn;
  $$('.page').forEach((s) => { s.hidden = s.id !== `page-${page}`; });
  $$('#nav a').forEach((a) => a.toggleAttribute('aria-current', a.dataset.page === page));
  if (a11yReady) $('#main').focus();
  if (page === 'contacts') loadContacts();
  if (page === 'history') loadHistory();
  if (page === 'wellbeing') loadWellbeing();
  document.title = `Vocalis – ${page[0].toUpperCase()}${page.slice(1)}`;
}
let a11yReady = false;
window.addEventListener('hashchange', route);
$('#logout').addEventListener('click', () => {
  // the microphone and the stream belong to this user: stop them before anyone else can sign in here
  if (mon.ws || mon.live) { stopMonitor(); if (mon.ws) mon.ws.close(); mon.ws = null; mon.live = false; }
  teardownAudio(); clearInterval(mon.poll); clearInterval(mon.follow); hideCountdown();
  $('#alert-box').hidden = true; mon.alertId = null;
  $$('form').forEach((f) => f.reset());
  contactNames = {};
  auth.clear(); location.hash = ''; route();
});

function formError(form, msg) { $('.form-error', form).textContent = msg || ''; }

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target; formError(f);
  try {
    auth.set(await api('/v1/auth/token', { method: 'POST', json: { email: f.email.value, password: f.password.value } }));
    f.reset(); location.hash = '#monitor'; route(); loadContactNames();
  } catch (err) { formError(f, err.message); }
});

// an alert's deliveries name the contact ("Mum (sms): sent"), not just "contact"
function loadContactNames() {
  api('/v1/contacts').then((rows) => { contactNames = Object.fromEntries(rows.map((c) => [c.id, c.name])); }).catch(() => {});
}

$('#register-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target; formError(f);
  try {
    await api('/v1/users', { method: 'POST', json: { email: f.email.value, password: f.password.value, name: f.name.value || null } });
    auth.set(await api('/v1/auth/token', { method: 'POST', json: { email: f.email.value, password: f.password.value } }));
    f.reset(); toast('Account created. Add an emergency contact next.');
    location.hash = '#contacts'; route();
  } catch (err) { formError(f, err.message); }
});

// ---------------------------------------------------------------- drawing helpers
function fft(re, im) { // in-place radix-2 FFT, length a power of two
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len, wr = Math.cos(ang), wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k, b = a + len / 2;
        const tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
        const nr = cr * wr - ci * wi; ci = cr * wi + ci * wr; cr = nr;
      }
    }
  }
}

function drawWave(canvas, x) {
  const g = canvas.getContext('2d'), w = canvas.width, h = canvas.height;
  g.fillStyle = '#0f1522'; g.fillRect(0, 0, w, h);
  g.strokeStyle = '#7fb2ff'; g.beginPath();
  const per = Math.max(1, Math.floor(x.length / w));
  for (let px = 0; px < w; px++) {
    let lo = 0, hi = 0;
    for (let i = px * per; i < Math.min(x.length, (px + 1) * per); i++) { lo = Math.min(lo, x[i]); hi = Math.max(hi, x[i]); }
    g.moveTo(px + 0.5, h / 2 - hi * h / 2); g.lineTo(px + 0.5, h / 2 - lo * h / 2 + 1);
  }
  g.stroke();
}

function colour(v) { // 0..1 -> dark blue .. yellow
  const r = Math.round(255 * Math.min(1, Math.max(0, 1.6 * v - 0.4)));
  const gg = Math.round(255 * Math.min(1, Math.max(0, 1.4 * v - 0.2)) * 0.9);
  const b = Math.round(255 * Math.max(0, 0.55 - Math.abs(v - 0.35)));
  return [r, gg, b];
}

function drawSpectrogram(canvas, x, sr) {
  const n = 512, hop = Math.max(128, Math.floor(x.length / canvas.width));
  const frames = Math.max(1, Math.floor((x.length - n) / hop) + 1);
  const bins = n / 2, win = new Float32Array(n);
  for (let i = 0; i < n; i++) win[i] = 0.5 - 0.5 * Math.cos(2 * Math.PI * i / (n - 1));
  const db = new Float32Array(frames * bins);
  let max = -Infinity;
  for (let f = 0; f < frames; f++) {
    const re = new Float32Array(n), im = new Float32Array(n);
    for (let i = 0; i < n; i++) re[i] = (x[f * hop + i] || 0) * win[i];
    fft(re, im);
    for (let k = 0; k < bins; k++) {
      const v = 10 * Math.log10(re[k] * re[k] + im[k] * im[k] + 1e-10);
      db[f * bins + k] = v; if (v > max) max = v;
    }
  }
  const img = new ImageData(frames, bins);
  for (let f = 0; f < frames; f++) {
    for (let k = 0; k < bins; k++) {
      const v = Math.max(0, (db[f * bins + k] - max + 80) / 80);
      const [r, g, b] = colour(v);
      const p = ((bins - 1 - k) * frames + f) * 4;
      img.data[p] = r; img.data[p + 1] = g; img.data[p + 2] = b; img.data[p + 3] = 255;
    }
  }
  const tmp = document.createElement('canvas'); tmp.width = frames; tmp.height = bins;
  tmp.getContext('2d').putImageData(img, 0, 0);
  const g = canvas.getContext('2d');
  g.imageSmoothingEnabled = true;
  g.drawImage(tmp, 0, 0, canvas.width, canvas.height);
  g.fillStyle = '#fff'; g.font = '11px system-ui';
  g.fillText(`${Math.round(sr / 2000)} kHz`, 4, 12); g.fillText('0', 4, canvas.height - 4);
}

function drawBars(el, probs) {
  el.innerHTML = '';
  const labels = Object.keys(probs).sort((a, b) => probs[b] - probs[a]);
  for (const lab of labels) {
    const row = document.createElement('div'); row.className = 'bar';
    const pct = Math.round(100 * probs[lab]);
    row.innerHTML = `<span></span><div class="track" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct}"><div class="fill" style="width:${pct}%"></div></div><span>${pct}%</span>`;
    row.firstChild.textContent = lab; row.querySelector('.track').setAttribute('aria-label', lab);
    el.append(row);
  }
}

function drawVA(canvas, v, a) {
  const g = canvas.getContext('2d'), s = canvas.width;
  g.clearRect(0, 0, s, s);
  g.strokeStyle = '#c5ccd6'; g.beginPath(); g.moveTo(s / 2, 0); g.lineTo(s / 2, s); g.moveTo(0, s / 2); g.lineTo(s, s / 2); g.stroke();
  g.fillStyle = '#5b6470'; g.font = '11px system-ui';
  g.fillText('pleasant →', s - 62, s / 2 - 4); g.fillText('aroused ↑', s / 2 + 4, 12);
  g.fillStyle = '#2457c5'; g.beginPath();
  g.arc(s / 2 + v * s / 2 * 0.95, s / 2 - a * s / 2 * 0.95, 7, 0, 2 * Math.PI); g.fill();
}

function lineChart(canvas, points, { yMin = -1, yMax = 1, color = '#2457c5', zero = true, label = '' } = {}) {
  const g = canvas.getContext('2d'), w = canvas.width, h = canvas.height, pad = 28;
  g.clearRect(0, 0, w, h);
  g.fillStyle = '#5b6470'; g.font = '11px system-ui';
  g.fillText(String(yMax), 2, 12); g.fillText(String(yMin), 2, h - 4); if (label) g.fillText(label, pad + 4, 12);
  const y = (v) => h - 6 - (v - yMin) / (yMax - yMin) * (h - 18);
  if (zero && yMin < 0) { g.strokeStyle = '#d9dee5'; g.beginPath(); g.moveTo(pad, y(0)); g.lineTo(w, y(0)); g.stroke(); }
  if (!points.length) { g.fillText('no data yet', w / 2 - 30, h / 2); return; }
  const x0 = points[0][0], x1 = points[points.length - 1][0] || x0 + 1;
  const x = (t) => pad + (x1 === x0 ? (w - pad) / 2 : (t - x0) / (x1 - x0) * (w - pad - 6));
  g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
  points.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
  g.stroke(); g.lineWidth = 1;
  g.fillStyle = color;
  points.forEach(([t, v]) => { g.beginPath(); g.arc(x(t), y(v), 2.5, 0, 2 * Math.PI); g.fill(); });
}

// ---------------------------------------------------------------- analyse
let recorder = null;
$('#rec-btn').addEventListener('click', async () => {
  if (recorder && recorder.state === 'recording') { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = []; const t0 = Date.now();
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    const timer = setInterval(() => { $('#rec-time').textContent = `${((Date.now() - t0) / 1000).toFixed(1)} s`; }, 200);
    recorder.onstop = () => {
      clearInterval(timer); stream.getTracks().forEach((t) => t.stop());
      $('#rec-btn').textContent = '● Record';
      analyse(new Blob(chunks, { type: recorder.mimeType || 'audio/webm' }));
    };
    recorder.start(250);
    $('#rec-btn').textContent = '■ Stop and analyse';
  } catch (err) { toast(`Microphone unavailable: ${err.message}`); }
});
$('#upload').addEventListener('change', (e) => { if (e.target.files[0]) analyse(e.target.files[0]); });

async function analyse(blob) {
  const fd = new FormData(); fd.append('file', blob, blob.name || 'clip.webm');
  $('#rec-time').textContent = 'analysing…';
  try {
    const [pred, audio] = await Promise.all([
      api('/v1/predict', { method: 'POST', body: fd }),
      blob.arrayBuffer().then((buf) => new OfflineAudioContext(1, 1, 16000).decodeAudioData(buf)).catch(() => null),
    ]);
    $('#analyse-result').hidden = false;
    if (audio) {
      const x = audio.getChannelData(0);
      drawWave($('#wave'), x); drawSpectrogram($('#spec'), x, audio.sampleRate);
    }
    $('#an-label').textContent = pred.label;
    $('#an-speech').hidden = pred.speech_detected !== false;
    drawBars($('#an-bars'), pred.probabilities);
    $('#an-valence').textContent = pred.valence.toFixed(2); $('#an-arousal').textContent = pred.arousal.toFixed(2);
    drawVA($('#va'), pred.valence, pred.arousal);
    $('#rec-time').textContent = `${(pred.duration_s || 0).toFixed(1)} s analysed`;
  } catch (err) { $('#rec-time').textContent = ''; toast(`Analysis failed: ${err.message}`); }
}

// ---------------------------------------------------------------- live monitor
const mon = { ws: null, live: false, retry: null, retries: 0, ctx: null, stream: null, node: null, keep: null, geo: null, risk: [], count: 0,
              alertId: null, evidence: null, poll: null, follow: null, stopping: false,
              cdTimer: null, cdDeadline: null };

function setState(text, on) {
  const el = $('#mon-state'); el.textContent = text; el.classList.toggle('on', !!on);
  el.classList.toggle('alarm', /danger|alert/.test(text));
}

// What an alert says goes into the monitor's state line only while it is listening: after Stop the
// line stays "stopped" (the alert box tells the alert's own story; its polling used to overwrite it).
function monitorState(text) { if (mon.ws) setState(text, true); }

// Closes after which the page reconnects by itself, the microphone still running: the server
// restarting (1001), a network drop (1006), overload (1013), the session-length cap (4033), a server
// error. A refused login (1008), bad parameters (4000) and Stop (1000) end monitoring.
const FINAL_CLOSES = new Set([1000, 1008, 4000]);
const RETRY_S = [1, 2, 4, 8, 15];

async function startMonitor() {
  if (mon.ws || mon.live) return;
  mon.stopping = false; mon.risk = []; mon.count = 0; mon.retries = 0;
  $('#mon-start').disabled = true; setState('starting…');
  try {
    mon.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
    // a 16 kHz context lets the browser's resampler do the work; else the worklet downsamples
    try { mon.ctx = new AudioContext({ sampleRate: 16000 }); } catch { mon.ctx = new AudioContext(); }
    await mon.ctx.audioWorklet.addModule('pcm-worklet.js');
    const src = mon.ctx.createMediaStreamSource(mon.stream);
    mon.node = new AudioWorkletNode(mon.ctx, 'pcm-downsampler', { processorOptions: { targetRate: 16000, blockSeconds: 0.25 } });
    await openSocket();
    mon.live = true;
    // audio goes to whichever socket is open now; while reconnecting it is dropped
    mon.node.port.onmessage = (e) => { const w = mon.ws; if (w && w.readyState === WebSocket.OPEN) w.send(e.data); };
    src.connect(mon.node);
    mon.keep = setInterval(() => { const w = mon.ws; if (w && w.readyState === WebSocket.OPEN) w.send(JSON.stringify({ type: 'KeepAlive' })); }, 5000);
    if ('geolocation' in navigator) {
      mon.geo = navigator.geolocation.watchPosition((p) => sendLocation(p), () => {}, { enableHighAccuracy: true, maximumAge: 30000 });
    }
    $('#mon-stop').disabled = false; setState('listening', true);
  } catch (err) {
    toast(`Could not start: ${err.message}`); teardownAudio();
    if (mon.ws) mon.ws.close(); mon.ws = null; mon.live = false;
    $('#mon-start').disabled = false; setState('stopped');
  }
}

function openSocket() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/v1/stream?token=${encodeURIComponent(auth.token)}&encoding=pcm16&sample_rate=16000`);
  ws.binaryType = 'arraybuffer';
  mon.ws = ws;
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = (e) => onSocketClose(ws, e);
  return new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error('connection failed')); });
}

function onSocketClose(ws, e) {
  if (mon.ws !== ws) return; // an old socket, or one startMonitor/sign-out already dealt with
  mon.ws = null;
  if (!$('#countdown').hidden && mon.alertId) followCountdown(mon.alertId);
  if (mon.live && !mon.stopping && !FINAL_CLOSES.has(e.code) && auth.token) {
    const wait = RETRY_S[Math.min(mon.retries, RETRY_S.length - 1)];
    if (!mon.retries) toast(`Connection lost (code ${e.code}): reconnecting. Your microphone stays on.`);
    mon.retries++;
    setState(`reconnecting… (code ${e.code})`, true);
    mon.retry = setTimeout(reconnect, wait * 1000);
    return;
  }
  mon.live = false; teardownAudio();
  $('#mon-start').disabled = false; $('#mon-stop').disabled = true;
  setState(e.code === 1000 || mon.stopping ? 'stopped' : `disconnected (${e.code})`);
  if (!mon.stopping && e.code !== 1000) toast(`Monitoring stopped (code ${e.code}).`);
}

async function reconnect() {
  mon.retry = null;
  if (mon.stopping || !mon.live || mon.ws) return;
  try { await openSocket(); } catch { /* its close schedules the next try */ }
}

function sendLocation(p) {
  mon.lastLocation = { type: 'Location', lat: p.coords.latitude, lon: p.coords.longitude, accuracy: p.coords.accuracy };
  if (mon.ws && mon.ws.readyState === WebSocket.OPEN) mon.ws.send(JSON.stringify(mon.lastLocation));
}

function teardownAudio() {
  clearInterval(mon.keep); mon.keep = null;
  if (mon.geo !== null && mon.geo !== undefined) { navigator.geolocation.clearWatch(mon.geo); mon.geo = null; }
  if (mon.node) { mon.node.port.onmessage = null; mon.node.disconnect(); mon.node = null; }
  if (mon.stream) { mon.stream.getTracks().forEach((t) => t.stop()); mon.stream = null; }
  if (mon.ctx) { mon.ctx.close(); mon.ctx = null; }
}

function stopMonitor() {
  mon.stopping = true;
  clearTimeout(mon.retry); mon.retry = null;
  if (mon.ws && mon.ws.readyState === WebSocket.OPEN) mon.ws.send(JSON.stringify({ type: 'CloseStream' }));
  else if (mon.ws) mon.ws.close(); // still connecting: its close ends monitoring
  teardownAudio(); setState('stopping…');
  $('#mon-stop').disabled = true;
  if (!mon.ws) { mon.live = false; $('#mon-start').disabled = false; setState('stopped'); } // was reconnecting
}

function onMessage(m) {
  switch (m.type) {
    case 'session.created':
      setState('listening', true);
      if (mon.retries) { toast('Reconnected: monitoring again.'); mon.retries = 0; }
      if (mon.lastLocation && mon.ws) mon.ws.send(JSON.stringify(mon.lastLocation)); // a new session knows nothing
      break;
    case 'prediction': {
      mon.count++;
      // an emotion only while a voice is heard: a quiet room or a noise gets no made-up mood
      // (the energy VAD cannot tell speech from noise, so with it the label stays)
      $('#live-label').textContent = m.voice_model === 'silero' && m.voice < 0.5 ? 'no speech' : (m.label || '–');
      $('#risk-meter').value = m.risk; $('#risk-value').textContent = m.risk.toFixed(2);
      $('#live-scream').textContent = m.scream.toFixed(2); $('#live-voice').textContent = m.voice.toFixed(2);
      $('#live-count').textContent = String(mon.count);
      mon.risk.push([m.t_end, m.risk]); if (mon.risk.length > 120) mon.risk.shift();
      lineChart($('#risk-chart'), mon.risk, { yMin: 0, yMax: 1, color: '#b3261e', zero: false });
      break;
    }
    case 'danger': setState('danger detected', true); break;
    case 'countdown':
      mon.alertId = m.alert_id || mon.alertId;
      $('#countdown').hidden = false;
      showCountdown(m.remaining);
      if (mon.lastLocation && mon.ws) mon.ws.send(JSON.stringify(mon.lastLocation));
      $('#cd-cancel').focus();
      break;
    case 'cancelled':
      hideCountdown(); setState('listening', true); cancelledToast(m.alert_id, m.cooldown_s);
      break;
    case 'danger.ended': if (mon.ws) setState('listening', true); break;
    case 'alert':
      hideCountdown(); showAlert(m.alert_id); maybeEvidence(m.alert_id);
      (m.warnings || []).forEach((w) => toast(`Warning: ${w}`));
      break;
    case 'alert.status': renderDeliveries(m); break;
    case 'error': toast(`Server: ${m.message}`); break;
    case 'warning': toast(`Server: ${m.message}`); break;
    default: break;
  }
}

// The socket closed during a countdown: the server runs it out and sends the alert unless it is
// cancelled (Cancel then goes over REST); follow the alert until it is one or the other.
function followCountdown(id) {
  clearInterval(mon.follow);
  mon.follow = setInterval(async () => {
    try {
      const a = await api(`/v1/alerts/${id}`);
      if (a.status === 'cancelled') { clearInterval(mon.follow); hideCountdown(); return; }
      if (a.status !== 'countdown' && a.status !== 'pending') {
        clearInterval(mon.follow); hideCountdown(); showAlert(id); maybeEvidence(id);
      }
    } catch { clearInterval(mon.follow); }
  }, 1000);
}

// One deadline on this page's clock. The first `countdown` message sets it; a later one can only
// bring it forward (the server says less time is left than we thought), never push it back: the
// messages come with each analysed window, so a late one would otherwise make the digit jump up.
function showCountdown(remaining) {
  const deadline = performance.now() + Math.max(0, remaining) * 1000;
  mon.cdDeadline = Math.min(mon.cdDeadline ?? Infinity, deadline);
  renderCountdown();
  if (!mon.cdTimer) mon.cdTimer = setInterval(renderCountdown, 200);
}

function renderCountdown() {
  const left = Math.max(0, (mon.cdDeadline - performance.now()) / 1000);
  $('#cd-remaining').textContent = String(Math.ceil(left));
  if (left <= 0) { clearInterval(mon.cdTimer); mon.cdTimer = null; }
}

function hideCountdown() {
  $('#countdown').hidden = true; clearInterval(mon.cdTimer); mon.cdTimer = null; mon.cdDeadline = null;
}

function showAlert(id) {
  mon.alertId = id;
  const box = $('#alert-box'); box.hidden = false;
  // when, for the person; the id (full in data-alert-id and the tooltip) only for reference
  const el = $('#alert-id'); el.dataset.alertId = id; el.title = `Alert ${id}`;
  el.textContent = `Raised at ${new Date().toLocaleTimeString()} · reference ${id.slice(0, 8)}`;
  $('#alert-title').textContent = 'Sending alert…'; $('#alert-summary').textContent = '';
  box.classList.remove('failed');
  monitorState('alert raised');
  clearInterval(mon.poll);
  mon.poll = setInterval(async () => { // also works after the socket closed
    try {
      const a = await api(`/v1/alerts/${id}`);
      renderDeliveries({ alert_id: id, status: a.status, deliveries: a.deliveries });
      if (a.deliveries.every((d) => ['sent', 'failed'].includes(d.status))) clearInterval(mon.poll);
    } catch { clearInterval(mon.poll); }
  }, 2000);
}

let contactNames = {};
function renderDeliveries(m) {
  const ul = $('#alert-deliveries'); ul.innerHTML = '';
  // the heading says what happened: never "sent" when nobody was reached
  const ds = m.deliveries || [];
  const sent = ds.filter((d) => d.status === 'sent').length;
  const failed = ds.filter((d) => d.status === 'failed').length;
  const box = $('#alert-box');
  if (!ds.length || failed === ds.length) {
    $('#alert-title').textContent = 'Alert NOT delivered – call emergency services yourself';
    $('#alert-summary').textContent = ds.length ? 'Every message to your contacts failed.' : 'You have no emergency contacts.';
    box.classList.add('failed'); monitorState('alert not delivered');
  } else if (sent) {
    $('#alert-title').textContent = `Alert sent (${sent} of ${ds.length} messages delivered)`;
    $('#alert-summary').textContent = failed ? `${failed} failed; see below.` : '';
    box.classList.remove('failed'); monitorState('alert sent');
  } else {
    $('#alert-title').textContent = 'Sending alert…'; $('#alert-summary').textContent = '';
  }
  for (const d of m.deliveries) {
    const li = document.createElement('li');
    const who = d.contact || contactNames[d.contact_id] || 'contact';
    li.innerHTML = '<span></span>: <span></span> <span></span>';
    li.children[0].textContent = `${who} (${d.channel})`;
    li.children[1].textContent = d.status; li.children[1].className = `st-${d.status}`;
    li.children[2].textContent = d.error || d.last_error ? `– ${d.error || d.last_error}` : '';
    li.dataset.channel = d.channel; li.dataset.status = d.status;
    ul.append(li);
  }
}

// Privacy: audio is analysed in memory and never stored, except evidence the user chose to record:
// automatically on an alert only when #ev-optin is ticked (remembered on this device, off by default),
// else with the 'Record evidence' button.
const evOptin = $('#ev-optin');
evOptin.checked = localStorage.getItem('vocalis.evidence') === 'on';
evOptin.addEventListener('change', () => localStorage.setItem('vocalis.evidence', evOptin.checked ? 'on' : 'off'));

function maybeEvidence(alertId) {
  if (evOptin.checked) { startEvidence(alertId); return; }
  if (mon.evidence) return;
  $('#ev-state').textContent = 'No evidence is being recorded (your choice).';
  const b = $('#ev-start'); b.hidden = false;
  b.onclick = () => { b.hidden = true; startEvidence(alertId); };
}

async function startEvidence(alertId) {
  if (mon.evidence) return;
  $('#ev-start').hidden = true;
  let stream = null;
  try { stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true }); } catch {
    try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (err) {
      $('#ev-state').textContent = `Evidence recording unavailable: ${err.message}`; return;
    }
  }
  const hasVideo = stream.getVideoTracks().length > 0;
  const type = hasVideo ? (MediaRecorder.isTypeSupported('video/webm;codecs=vp8,opus') ? 'video/webm;codecs=vp8,opus' : 'video/webm')
    : 'audio/webm';
  const rec = new MediaRecorder(stream, MediaRecorder.isTypeSupported(type) ? { mimeType: type } : {});
  const chunks = [];
  rec.ondataavailable = (e) => e.data.size && chunks.push(e.data);
  rec.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    $('#ev-preview').hidden = true; $('#ev-stop').hidden = true;
    const blob = new Blob(chunks, { type: (rec.mimeType || type).split(';')[0] });
    $('#ev-state').textContent = `Uploading ${(blob.size / 1024).toFixed(0)} KiB of evidence…`;
    try {
      const ev = await api(`/v1/alerts/${alertId}/evidence`, { method: 'POST', body: blob, headers: { 'Content-Type': blob.type } });
      $('#ev-state').textContent = `Evidence uploaded (${ev.bytes} bytes, ${ev.content_type}).`;
      $('#ev-state').dataset.uploaded = ev.id;
    } catch (err) { $('#ev-state').textContent = `Evidence upload failed: ${err.message}`; }
    mon.evidence = null;
  };
  rec.start(1000);
  mon.evidence = rec;
  $('#ev-state').textContent = hasVideo ? 'Recording video and sound as evidence…' : 'Recording sound as evidence (no camera)…';
  if (hasVideo) { const v = $('#ev-preview'); v.srcObject = stream; v.hidden = false; v.play().catch(() => {}); }
  $('#ev-stop').hidden = false;
}

$('#ev-stop').addEventListener('click', () => { if (mon.evidence && mon.evidence.state === 'recording') mon.evidence.stop(); });
$('#mon-start').addEventListener('click', startMonitor);
$('#mon-stop').addEventListener('click', stopMonitor);
// Cancel goes over REST whenever the alert is known: it works after Stop or a lost connection (the
// server still runs the countdown out), stops the live countdown too, and says whether it worked.
$('#cd-cancel').addEventListener('click', async () => {
  const id = mon.alertId;
  if (!id) {
    if (mon.ws && mon.ws.readyState === WebSocket.OPEN) mon.ws.send(JSON.stringify({ type: 'Cancel' }));
    return;
  }
  try {
    await api(`/v1/alerts/${id}/cancel`, { method: 'POST' });
    clearInterval(mon.follow); hideCountdown(); cancelledToast(id, 60);
    setState(mon.ws ? 'listening' : 'stopped', !!mon.ws);
  } catch (err) {
    toast(`Could not cancel: ${err.message}`);  // e.g. 409: the alert was already sent
  }
});
function cancelledToast(id, cooldown) {
  if (mon.cancelledId === id) return;
  mon.cancelledId = id;
  toast(cooldown ? `Alert cancelled. For ${Math.round(cooldown)} s this sound will not start another countdown; if it goes on after that, a new one starts. Use Panic if you need help.` : 'Alert cancelled.');
}
$('#mon-panic').addEventListener('click', async () => {
  if (!confirm('Alert all your contacts now?')) return;
  if (mon.ws && mon.ws.readyState === WebSocket.OPEN) { mon.ws.send(JSON.stringify({ type: 'Panic' })); return; }
  try {
    const body = { reason: 'panic button (web)' };
    if (mon.lastLocation) body.location = { latitude: mon.lastLocation.lat, longitude: mon.lastLocation.lon, accuracy_m: mon.lastLocation.accuracy };
    const a = await api('/v1/alerts', { method: 'POST', json: body });
    showAlert(a.id); renderDeliveries({ deliveries: a.deliveries }); maybeEvidence(a.id);
    (a.warnings || []).forEach((w) => toast(`Warning: ${w}`));
  } catch (err) { toast(`Panic failed: ${err.message}`); }
});

// ---------------------------------------------------------------- contacts
async function loadContacts() {
  try {
    const rows = await api('/v1/contacts');
    contactNames = Object.fromEntries(rows.map((c) => [c.id, c.name]));
    const tb = $('#contacts-table tbody'); tb.innerHTML = '';
    if (!rows.length) tb.innerHTML = '<tr><td colspan="5" class="muted">No contacts yet: add one above so alerts reach someone.</td></tr>';
    for (const c of rows) {
      const tr = document.createElement('tr');
      for (const v of [c.name, c.phone || '', c.email || '', c.channels.join(', ')]) {
        const td = document.createElement('td'); td.textContent = v; tr.append(td);
      }
      const td = document.createElement('td');
      const edit = document.createElement('button'); edit.textContent = 'Edit'; edit.setAttribute('aria-label', `Edit ${c.name}`);
      edit.onclick = () => fillContact(c);
      const del = document.createElement('button'); del.textContent = 'Delete'; del.setAttribute('aria-label', `Delete ${c.name}`);
      del.onclick = async () => {
        if (!confirm(`Delete ${c.name}?`)) return;
        await api(`/v1/contacts/${c.id}`, { method: 'DELETE' }).catch((e) => toast(e.message));
        if ($('#contact-form').id.value === c.id) resetContact();  // it was being edited: it is gone
        loadContacts();
      };
      td.append(edit, ' ', del); tr.append(td); tb.append(tr);
    }
  } catch (err) { toast(err.message); }
}

function fillContact(c) {
  const f = $('#contact-form');
  f.id.value = c.id; f.name.value = c.name; f.phone.value = c.phone || ''; f.email.value = c.email || '';
  f.webhook_url.value = c.webhook_url || '';
  $$('input[name=channels]', f).forEach((cb) => { cb.checked = c.channels.includes(cb.value); });
  $('#contact-form-h').textContent = `Edit ${c.name}`; f.name.focus();
}

function resetContact() {
  const f = $('#contact-form'); f.reset(); f.id.value = '';
  $('#contact-form-h').textContent = 'Add a contact'; formError(f);
}
$('#contact-reset').addEventListener('click', resetContact);

$('#contact-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target; formError(f);
  const body = {
    name: f.name.value, phone: f.phone.value || null, email: f.email.value || null,
    webhook_url: f.webhook_url.value || null,
    channels: $$('input[name=channels]:checked', f).map((cb) => cb.value),
  };
  try {
    const c = f.id.value ? await api(`/v1/contacts/${f.id.value}`, { method: 'PATCH', json: body })
      : await api('/v1/contacts', { method: 'POST', json: body });
    toast(`Saved ${c.name}.`); (c.warnings || []).forEach((w) => toast(`Warning: ${w}`));
    resetContact(); loadContacts();
  } catch (err) { formError(f, err.message); }
});

// ---------------------------------------------------------------- history
async function loadHistory() {
  try {
    const page = await api('/v1/history?limit=200');
    const items = page.items;
    const pts = items.slice().reverse().map((p) => [Date.parse(p.created_at) / 1000, p.valence]);
    lineChart($('#hist-chart'), pts, { yMin: -1, yMax: 1, label: 'valence' });
    const tb = $('#history-table tbody'); tb.innerHTML = '';
    if (!items.length) tb.innerHTML = '<tr><td colspan="6" class="muted">Nothing yet: analyse a clip or start the live monitor.</td></tr>';
    for (const p of items) {
      const tr = document.createElement('tr');
      const label = p.speech_detected === false ? `${p.label} (no speech: a guess)` : p.label;
      const vals = [new Date(p.created_at).toLocaleString(), label, p.valence.toFixed(2), p.arousal.toFixed(2), p.source,
        p.duration_s == null ? '' : `${p.duration_s.toFixed(1)} s`];
      for (const v of vals) { const td = document.createElement('td'); td.textContent = v; tr.append(td); }
      tb.append(tr);
    }
  } catch (err) { toast(err.message); }
}

// ---------------------------------------------------------------- wellbeing
const wb = { rec: null, trendUrl: null };

// Record a clip with MediaRecorder; the button toggles start/stop; `done(blob)` gets the recording.
async function toggleRecord(btn, timeEl, idleText, busyText, done) {
  if (wb.rec && wb.rec.state === 'recording') { wb.rec.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = []; const t0 = Date.now();
    const r = new MediaRecorder(stream); wb.rec = r;
    r.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    const timer = setInterval(() => { timeEl.textContent = `${((Date.now() - t0) / 1000).toFixed(1)} s`; }, 200);
    r.onstop = () => {
      clearInterval(timer); stream.getTracks().forEach((t) => t.stop());
      btn.textContent = idleText; wb.rec = null;
      done(new Blob(chunks, { type: r.mimeType || 'audio/webm' }));
    };
    r.start(250);
    btn.textContent = busyText;
  } catch (err) { toast(`Microphone unavailable: ${err.message}`); }
}

function audioForm(blob) {
  const fd = new FormData(); fd.append('file', blob, blob.name || 'clip.webm'); return fd;
}

async function wbCheckin(blob) {
  $('#wb-rec-time').textContent = 'analysing…';
  try {
    const c = await api('/v1/wellbeing/checkins', { method: 'POST', body: audioForm(blob) });
    $('#wb-result').hidden = false;
    $('#wb-label').textContent = c.label;
    $('#wb-conf').textContent = `(confidence ${(c.confidence * 100).toFixed(0)}%)`;
    $('#wb-valence').textContent = c.valence.toFixed(2); $('#wb-arousal').textContent = c.arousal.toFixed(2);
    $('#wb-personal').textContent = c.personalised ? `personalised (weight ${c.weight.toFixed(2)})` : 'general model';
    $('#wb-personal').classList.toggle('on', c.personalised);
    $('#wb-rec-time').textContent = 'saved';
    loadWellbeing();
  } catch (err) { $('#wb-rec-time').textContent = ''; toast(`Check-in failed: ${err.message}`); }
}

async function wbEnrol(blob) {
  const f = $('#wb-enrol-form'); formError(f);
  const label = $('#wb-enrol-label').value;
  $('#wb-enrol-time').textContent = 'saving…';
  try {
    const r = await api(`/v1/wellbeing/enrol?label=${encodeURIComponent(label)}`, { method: 'POST', body: audioForm(blob) });
    $('#wb-enrol-time').textContent = '';
    toast(`Saved a ${r.label} sample.${r.note ? ' ' + r.note[0].toUpperCase() + r.note.slice(1) + '.' : ''}`);
    showCounts(r.counts, r.personalised, r.weight);
  } catch (err) { $('#wb-enrol-time').textContent = ''; formError(f, err.message); }
}

function showCounts(counts, personalised, weight) {
  const parts = Object.entries(counts || {}).map(([k, v]) => `${k} ${v}`);
  $('#wb-counts').textContent = parts.length
    ? `Your samples: ${parts.join(', ')}${personalised ? ` (personalised, weight ${weight.toFixed(2)})` : ''}.`
    : 'No samples yet.';
}

// calendar days and weeks of the history follow the browser's time zone (the server defaults to UTC)
function wbZone() {
  const z = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return z && z.includes('/') && !z.startsWith('Etc/Unknown') ? z : 'UTC';
}

async function loadTrend(days) {
  const seq = (wb.trendSeq = (wb.trendSeq || 0) + 1);  // only the latest request may paint
  const tz = encodeURIComponent(wbZone());
  const r = await fetch(`/v1/wellbeing/trend.png?days=${days}&tz=${tz}`, { headers: { Authorization: `Bearer ${auth.token}` } });
  const blob = r.ok ? await r.blob() : null;
  if (seq !== wb.trendSeq) return;  // a newer reload (e.g. after a check-in) superseded this one
  if (!blob) { $('#wb-trend').hidden = true; return; }
  if (wb.trendUrl) URL.revokeObjectURL(wb.trendUrl);
  wb.trendUrl = URL.createObjectURL(blob);
  $('#wb-trend').src = wb.trendUrl; $('#wb-trend').hidden = false;
}

async function loadWellbeing() {
  const days = $('#wb-days').value, period = $('#wb-period').value;
  try {
    const [prof, hist] = await Promise.all([
      api('/v1/wellbeing/profile'),
      api(`/v1/wellbeing/history?period=${period}&days=${days}&tz=${encodeURIComponent(wbZone())}`),
    ]);
    $('#wb-disclaimer').textContent = hist.disclaimer || prof.disclaimer;
    const sel = $('#wb-enrol-label');
    if (!sel.options.length) {
      for (const l of prof.labels) { const o = document.createElement('option'); o.value = l; o.textContent = l; sel.append(o); }
    }
    showCounts(prof.counts, prof.personalised, prof.weight);
    const tb = $('#wb-table tbody'); tb.innerHTML = '';
    if (!hist.rows.length) tb.innerHTML = '<tr><td colspan="5" class="muted">No check-ins in this period yet.</td></tr>';
    for (const p of hist.rows.slice().reverse()) {
      const tr = document.createElement('tr');
      for (const v of [p.start, p.n, p.valence.toFixed(2), p.arousal.toFixed(2), p.top_label]) {
        const td = document.createElement('td'); td.textContent = String(v); tr.append(td);
      }
      tb.append(tr);
    }
    const adv = hist.advice;
    $('#wb-reason').textContent = adv.triggered ? `${adv.reason}. Some things that may help:` : `No suggestions right now: ${adv.reason}.`;
    const ul = $('#wb-tips'); ul.innerHTML = '';
    for (const t of adv.tips) {
      const li = document.createElement('li'); li.textContent = t.text + ' ';
      const src = document.createElement('span'); src.className = 'src'; src.textContent = `(${t.source})`;
      li.append(src); ul.append(li);
    }
    await loadTrend(days);
  } catch (err) { toast(err.message); }
}

$('#wb-rec').addEventListener('click', () => toggleRecord($('#wb-rec'), $('#wb-rec-time'), '● Record check-in', '■ Stop and check in', wbCheckin));
$('#wb-upload').addEventListener('change', (e) => { if (e.target.files[0]) wbCheckin(e.target.files[0]); e.target.value = ''; });
$('#wb-enrol-rec').addEventListener('click', () => toggleRecord($('#wb-enrol-rec'), $('#wb-enrol-time'), '● Record sample', '■ Stop and save sample', wbEnrol));
$('#wb-enrol-upload').addEventListener('change', (e) => { if (e.target.files[0]) wbEnrol(e.target.files[0]); e.target.value = ''; });
$('#wb-days').addEventListener('change', loadWellbeing);
$('#wb-period').addEventListener('change', loadWellbeing);
$('#wb-reset').addEventListener('click', async () => {
  if (!confirm('Forget your voice samples and personal model? Your check-ins stay.')) return;
  try { const r = await api('/v1/wellbeing', { method: 'DELETE' }); toast(`Removed ${r.enrolments} sample(s).`); loadWellbeing(); } catch (err) { toast(err.message); }
});
$('#wb-delete').addEventListener('click', async () => {
  if (!confirm('Delete all your wellbeing data (samples, personal model and every check-in)? This cannot be undone.')) return;
  try { const r = await api('/v1/wellbeing?all=true', { method: 'DELETE' }); toast(`Deleted ${r.enrolments} sample(s) and ${r.checkins} check-in(s).`); loadWellbeing(); } catch (err) { toast(err.message); }
});

$('#delete-all').addEventListener('click', async () => {
  if (!confirm('Delete everything Vocalis keeps about you: history, call reports, finished alerts, evidence recordings and wellbeing data? Your account and contacts stay. This cannot be undone.')) return;
  try {
    const r = await api('/v1/users/me/data', { method: 'DELETE' });
    toast(`Deleted ${r.predictions} history entries, ${r.alerts} alerts, ${r.evidence} evidence recordings and your wellbeing data.${r.alerts_kept ? ` ${r.alerts_kept} alert(s) still being delivered are kept until done.` : ''}`);
    $('#alert-box').hidden = true; route();
  } catch (err) { toast(err.message); }
});

// ---------------------------------------------------------------- start
route();
a11yReady = true;
if (auth.token) loadContactNames();
window.vocalis = { mon, EMOTION_ORDER }; // for debugging and the browser tests
