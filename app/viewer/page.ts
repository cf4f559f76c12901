/**
 * The viewer page: plain HTML and a small script, no framework and no build
 * step. It only ever receives plaintext from the local viewer server on
 * loopback; keys never reach the browser (see docs/app.md).
 */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vigil</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { display: flex; gap: 1rem; align-items: center; padding: .5rem 1rem; background: #222; }
  h1 { font-size: 1.2rem; margin: 0; }
  main { display: flex; flex-wrap: wrap; gap: 1rem; padding: 1rem; }
  #events { flex: 1 1 280px; max-width: 360px; }
  #event-list { list-style: none; padding: 0; margin: 0; }
  #event-list li { display: flex; gap: .5rem; align-items: center; padding: .3rem; cursor: pointer; border-radius: 4px; }
  #event-list li:hover, #event-list li.active { background: #333; }
  #event-list img { width: 96px; height: 54px; object-fit: cover; background: #000; }
  #player { flex: 3 1 480px; }
  video { width: 100%; max-height: 70vh; background: #000; }
  button { background: #444; color: #eee; border: 0; padding: .4rem .8rem; border-radius: 4px; cursor: pointer; }
  #status { color: #aaa; font-size: .9rem; }
  #alert { background: #7a1f1f; color: #fff; padding: .5rem 1rem; }
  #health { background: #6b5200; color: #fff; padding: .5rem 1rem; }
  #notices { list-style: none; margin: 0; padding: 0 1rem; color: #ccc; font-size: .9rem; }
  #notices li.untrusted { color: #e8b04a; }
  #audio { background: #1f5f3a; color: #fff; margin: 0 0 .4rem; }
  .audio-mark { color: #7fd49b; font-size: .8rem; }
</style>
</head>
<body>
<header><h1>Vigil</h1><button id="live-btn" type="button">Live</button><button id="notify-btn" type="button" hidden>Enable notifications</button><span id="status"></span></header>
<div id="alert" role="alert" hidden></div>
<div id="health" role="status" hidden></div>
<ul id="notices" aria-live="polite"></ul>
<main>
  <section id="events"><h2>Events</h2><ul id="event-list"></ul><p id="empty">No events yet.</p></section>
  <section id="player"><button id="audio" type="button" hidden aria-live="polite"></button><video id="video" controls muted playsinline></video></section>
</main>
<script src="app.js"></script>
</body>
</html>
`;

export const APP_JS = `'use strict';
const list = document.getElementById('event-list');
const empty = document.getElementById('empty');
const video = document.getElementById('video');
const statusEl = document.getElementById('status');
const alertEl = document.getElementById('alert');
const healthEl = document.getElementById('health');
const audioEl = document.getElementById('audio');
let shown = '';
let liveAbort = null;
// notices: browser notifications for what arrives while the page is open
const noticesEl = document.getElementById('notices');
const notifyBtn = document.getElementById('notify-btn');
let noticeCursor = null;
window.vigilNotified = [];

function fmtTime(ms) { return new Date(ms).toLocaleString(); }
// an AAC track muxed next to the video (docs/media.md, "Audio"): codecs="avc1...,mp4a.40.2"
function hasAudio(codec) { return /mp4a\\./.test(codec || ''); }
// the indicator: shown while what plays has sound; it also mutes and unmutes (pages start muted)
function showAudio(on) {
  audioEl.hidden = !on;
  document.body.dataset.audio = on ? 'on' : 'off';
  audioEl.textContent = on ? (video.muted ? '\u{1F507} Audio (muted \u2014 click to listen)' : '\u{1F50A} Audio on') : '';
}
audioEl.addEventListener('click', () => { video.muted = !video.muted; });
video.addEventListener('volumechange', () => { if (!audioEl.hidden) showAudio(true); });
function setStatus(t) { statusEl.textContent = t; }

async function hubStatus() {
  try {
    const r = await fetch('api/status', { cache: 'no-store' });
    if (!r.ok) return;
    const { hub } = await r.json();
    const offline = !!(hub && hub.offline);
    alertEl.hidden = !offline;
    alertEl.textContent = offline ? hub.message : '';
    document.body.dataset.hubOffline = offline ? 'yes' : 'no';
    healthEl.hidden = !(hub && hub.health);
    healthEl.textContent = hub && hub.health ? hub.health : '';
  } catch (err) { /* the viewer itself is unreachable: refresh() says so */ }
}

function showNotice(n) {
  const li = document.createElement('li');
  li.textContent = (n.trusted ? '' : '[relay-reported] ') + n.title + ': ' + n.body;
  if (!n.trusted) li.className = 'untrusted';
  noticesEl.prepend(li);
  while (noticesEl.children.length > 5) noticesEl.lastElementChild.remove();
  if ('Notification' in window && Notification.permission === 'granted') {
    try {
      new Notification(n.title, { body: n.body, tag: 'vigil-' + n.id });
      window.vigilNotified.push({ id: n.id, title: n.title, body: n.body, trusted: n.trusted });
      document.body.dataset.notified = String(window.vigilNotified.length);
    } catch (err) { setStatus('notification: ' + err); }
  }
}

async function pollNotices() {
  try {
    const r = await fetch('api/notices?after=' + (noticeCursor === null ? 0 : noticeCursor), { cache: 'no-store' });
    if (!r.ok) return;
    const { notices, last } = await r.json();
    // notices from before the page opened are listed, not raised again
    const fresh = noticeCursor !== null;
    noticeCursor = last;
    for (const n of notices) { if (fresh) showNotice(n); }
    document.body.dataset.noticeCursor = String(last);
  } catch (err) { /* the viewer is unreachable: refresh() says so */ }
}

function b64urlBytes(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

async function setupPush() {
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) { document.body.dataset.push = 'unsupported'; return; }
  try {
    const reg = await navigator.serviceWorker.register('sw.js');
    const cfg = await fetch('api/push/config', { cache: 'no-store' });
    if (!cfg.ok) { document.body.dataset.push = 'no-relay'; return; }
    const { vapidKey } = await cfg.json();
    let sub = await reg.pushManager.getSubscription();
    if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlBytes(vapidKey) });
    const r = await fetch('api/push/subscription', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sub.toJSON()) });
    document.body.dataset.push = r.ok ? 'registered' : 'refused';
  } catch (err) {
    // no push service in this browser (or blocked): notices still show while the page is open
    document.body.dataset.push = 'unavailable';
  }
}

function setupNotifications() {
  if (!('Notification' in window)) return;
  if (Notification.permission === 'granted') { setupPush(); return; }
  if (Notification.permission === 'denied') return;
  notifyBtn.hidden = false;
  notifyBtn.addEventListener('click', async () => {
    const p = await Notification.requestPermission();
    notifyBtn.hidden = p !== 'default';
    if (p === 'granted') setupPush();
  });
}

async function refresh() {
  hubStatus();
  pollNotices();
  try {
    const r = await fetch('api/events', { cache: 'no-store' });
    if (!r.ok) { setStatus('viewer error ' + r.status); return; }
    const { events } = await r.json();
    const key = JSON.stringify(events.map((e) => e.seq));
    document.body.dataset.events = String(events.length);
    if (key === shown) return;
    shown = key;
    list.replaceChildren();
    empty.hidden = events.length > 0;
    for (const e of events) {
      const li = document.createElement('li');
      li.dataset.seq = String(e.seq);
      li.className = 'event';
      const img = document.createElement('img');
      img.alt = '';
      if (e.thumbnail !== null) img.src = 'api/items/' + e.thumbnail + '/media';
      const span = document.createElement('span');
      span.textContent = fmtTime(e.startedAt) + ' (' + Math.round(e.durationMs / 1000) + ' s)';
      li.append(img, span);
      if (hasAudio(e.codec)) {
        const mark = document.createElement('span');
        mark.className = 'audio-mark';
        mark.textContent = '\u266A audio';
        li.append(mark);
      }
      li.addEventListener('click', () => play(e, li));
      list.append(li);
    }
  } catch (err) { setStatus('cannot reach the viewer: ' + err); }
}

function stopLive() { if (liveAbort) { liveAbort.abort(); liveAbort = null; } showAudio(false); }

function play(e, li) {
  stopLive();
  for (const x of list.querySelectorAll('li.active')) x.classList.remove('active');
  li.classList.add('active');
  showAudio(hasAudio(e.codec));
  video.src = 'api/items/' + e.seq + '/media';
  video.play().catch((err) => setStatus('playback: ' + err));
  setStatus('clip of ' + fmtTime(e.startedAt));
}

async function live() {
  stopLive();
  if (!('MediaSource' in window)) { setStatus('this browser has no Media Source Extensions'); return; }
  const ac = new AbortController();
  liveAbort = ac;
  setStatus('starting\u2026');
  document.body.dataset.live = 'starting';
  let res;
  try { res = await fetch('api/live', { signal: ac.signal }); } catch (err) { setStatus('live: ' + err); document.body.dataset.live = 'failed'; return; }
  if (res.status === 409 || res.status === 504) {
    let msg = 'live view unavailable';
    try { msg = (await res.json()).message; } catch (err) { /* keep the generic text */ }
    setStatus(msg);
    document.body.dataset.live = 'refused';
    return;
  }
  if (!res.ok || !res.body) { setStatus('live unavailable (' + res.status + ')'); document.body.dataset.live = 'failed'; return; }
  const codec = res.headers.get('x-vigil-codec') || 'video/mp4; codecs="avc1.42E01E"';
  if (!MediaSource.isTypeSupported(codec)) { setStatus('unsupported live codec ' + codec); return; }
  showAudio(hasAudio(codec));
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  await new Promise((r) => ms.addEventListener('sourceopen', r, { once: true }));
  const sb = ms.addSourceBuffer(codec);
  sb.mode = 'sequence';
  const queue = [];
  const pump = () => { if (!sb.updating && queue.length) sb.appendBuffer(queue.shift()); };
  sb.addEventListener('updateend', () => {
    pump();
    // stay near the live edge
    if (video.buffered.length && video.buffered.end(0) - video.currentTime > 2) video.currentTime = video.buffered.end(0) - 0.3;
  });
  video.play().catch(() => undefined);
  setStatus('live');
  document.body.dataset.live = 'on';
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      queue.push(value);
      pump();
    }
  } catch (err) { if (!ac.signal.aborted) setStatus('live ended: ' + err); }
}

document.getElementById('live-btn').addEventListener('click', () => { live(); });
setupNotifications();
refresh();
setInterval(refresh, 2000);
`;

/**
 * The service worker: a push message carries ciphertext this page cannot open
 * (the MLS state lives in the viewer process), so it hands the plaintext the
 * browser decrypted (RFC 8291) to the viewer, which opens it (MLS) or labels
 * it relay-reported, and shows what comes back.
 */
export const SW_JS = `'use strict';
self.addEventListener('push', (event) => {
  event.waitUntil((async () => {
    let title = 'Vigil';
    let body = 'new event (open the viewer)';
    try {
      const data = event.data ? await event.data.arrayBuffer() : new ArrayBuffer(0);
      const r = await fetch('api/push/open', { method: 'POST', body: data, credentials: 'same-origin' });
      if (r.ok) { const n = await r.json(); title = n.title; body = (n.trusted ? '' : '[relay-reported] ') + n.body; }
    } catch (err) { /* the viewer is not running: the generic text */ }
    await self.registration.showNotification(title, { body, tag: 'vigil' });
  })());
});
self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow('./'));
});
`;
