/**
 * The viewer page: plain HTML and a small script, no framework and no build
 * step. It only ever receives plaintext from the local viewer server on
 * loopback; keys never reach the browser (see docs/app.md).
 *
 * A daily review page: events grouped by day, newest first; rows are kept
 * (keyed by item) across the 2 s refresh, so a selection, a focus or a hover
 * survives it, and new events wait behind a "N new events" button while the
 * pointer or the focus is in the list (rows never shift under the cursor).
 * Selection API (notifications, links): the URL hash `#item=<itemId>` (the
 * clip's item id, as in hub notices) and `window.vigilSelect(itemId)`; an item
 * not listed yet is selected when it arrives.
 */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vigil</title>
<style>
  * { box-sizing: border-box; }
  [hidden] { display: none !important; }
  body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; padding: .25rem .75rem; background: #222; }
  h1 { font-size: 1.2rem; margin: 0 .5rem 0 0; }
  nav { display: flex; gap: .25rem; }
  nav a { color: #eee; text-decoration: none; padding: 0 .75rem; min-height: 44px; display: inline-flex; align-items: center; border-radius: 4px; }
  nav a[aria-current="page"] { background: #3a3a3a; text-decoration: underline; }
  button, a.btn { background: #444; color: #eee; border: 0; padding: 0 .8rem; border-radius: 4px; cursor: pointer; min-height: 44px; min-width: 44px; font: inherit; display: inline-flex; align-items: center; justify-content: center; text-decoration: none; }
  button:disabled { opacity: .5; cursor: default; }
  :focus-visible { outline: 3px solid #6cf; outline-offset: 1px; }
  /* one line per cell and columns set by the screen width alone: the strip keeps its height
     whatever the hub reports, so the event list below never moves when the status arrives */
  #strip { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: .15rem 1rem; margin: 0; padding: .3rem .75rem; background: #1a1a1a; font-size: .8rem; color: #bbb; }
  #strip div { display: flex; gap: .3rem; min-width: 0; }
  #strip dt { color: #888; flex: none; }
  #strip dd { margin: 0; min-width: 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #strip [data-level="bad"] { color: #ff8a80; }
  #strip [data-level="warn"] { color: #e8b04a; }
  #alert { background: #7a1f1f; color: #fff; padding: .5rem 1rem; }
  #health { background: #6b5200; color: #fff; padding: .5rem 1rem; }
  #notices { list-style: none; margin: 0; padding: 0 1rem; color: #ccc; font-size: .9rem; }
  #notices li.untrusted { color: #e8b04a; }
  main { display: grid; grid-template-columns: minmax(280px, 380px) 1fr; gap: 1rem; padding: .75rem; align-items: start; }
  #player { grid-column: 2; grid-row: 1; }
  #events { grid-column: 1; grid-row: 1; min-width: 0; }
  video { width: 100%; max-height: 70vh; background: #000; display: block; }
  h2 { font-size: 1.05rem; margin: 0 0 .4rem; }
  h3 { font-size: .9rem; color: #aaa; margin: .6rem 0 .2rem; }
  .day-list { list-style: none; padding: 0; margin: 0; }
  li.event { display: flex; gap: .25rem; align-items: stretch; border-radius: 4px; }
  li.event .pick { flex: 1; min-width: 0; justify-content: flex-start; gap: .5rem; padding: .25rem; background: transparent; text-align: left; min-height: 48px; }
  li.event:hover, li.event.active { background: #333; }
  li.event.active .pick { box-shadow: inset 3px 0 0 #6cf; }
  li.event img { width: 80px; height: 45px; object-fit: cover; background: #000; flex: none; }
  li.event .dl, li.event .del { background: transparent; flex: none; width: 44px; padding: 0; }
  .events-head { display: flex; align-items: center; gap: .5rem; min-height: 44px; }
  .events-head h2 { margin: 0; }
  #new-events { background: #24527a; }
  #status { color: #aaa; font-size: .9rem; min-height: 1.2em; margin: .3rem 0; }
  #now { margin: .3rem 0; }
  #phones-view { padding: .75rem; max-width: 40rem; }
  #phone-list { list-style: none; padding: 0; }
  #phone-list li { display: flex; gap: .5rem; align-items: center; padding: .25rem 0; flex-wrap: wrap; }
  #phone-list code { word-break: break-all; }
  .badge { font-size: .75rem; background: #333; padding: .1rem .4rem; border-radius: 3px; }
  #invite-text { width: 100%; min-height: 6rem; font-family: monospace; background: #000; color: #eee; }
  @media (max-width: 700px) {
    main { grid-template-columns: 1fr; padding: .5rem; }
    #player { grid-column: 1; grid-row: 1; position: sticky; top: 0; background: #111; z-index: 1; padding-bottom: .3rem; }
    #events { grid-column: 1; grid-row: 2; }
    video { max-height: 32vh; }
  }
  #audio { background: #1f5f3a; color: #fff; margin: 0 0 .4rem; }
  .audio-mark { color: #7fd49b; font-size: .8rem; }
</style>
</head>
<body>
<header>
  <h1>Vigil</h1>
  <nav aria-label="Views"><a href="#events" id="nav-events" aria-current="page">Events</a><a href="#phones" id="nav-phones">Phones</a></nav>
  <button id="live-btn" type="button">Live</button>
  <button id="test-btn" type="button" hidden>Test event</button>
  <button id="notify-btn" type="button" hidden>Enable notifications</button>
</header>
<dl id="strip" aria-label="Hub status">
  <div><dt>Hub</dt><dd id="st-hub">…</dd></div>
  <div><dt>Camera</dt><dd id="st-camera">…</dd></div>
  <div><dt>Encoder</dt><dd id="st-encoder">…</dd></div>
  <div><dt>Storage</dt><dd id="st-storage">…</dd></div>
  <div><dt>Relay</dt><dd id="st-relay">…</dd></div>
</dl>
<div id="alert" role="alert" hidden></div>
<div id="health" role="status" hidden></div>
<ul id="notices" aria-live="polite" aria-label="Notices"></ul>
<main id="review">
  <section id="player" aria-label="Player">
    <button id="audio" type="button" hidden aria-live="polite"></button>
    <video id="video" controls muted playsinline aria-label="Selected clip"></video>
    <p id="now"></p>
    <p id="status" role="status"></p>
  </section>
  <section id="events" aria-labelledby="events-h">
    <div class="events-head"><h2 id="events-h">Events</h2><button id="new-events" type="button" hidden></button></div>
    <div id="days"></div>
    <p id="empty">No events yet.</p>
  </section>
</main>
<section id="phones-view" aria-labelledby="phones-h" hidden>
  <h2 id="phones-h">Phones</h2>
  <p id="phones-note"></p>
  <ul id="phone-list" aria-label="Paired phones"></ul>
  <button id="invite-btn" type="button">Invite a phone</button>
  <div id="invite-out" hidden>
    <label for="invite-text">Give this to the new phone (secret, single use, valid until <span id="invite-until"></span>); on it, run:</label>
    <textarea id="invite-text" readonly></textarea>
  </div>
  <p id="phones-status" role="status"></p>
</section>
<script src="app.js"></script>
</body>
</html>
`;
export const APP_JS = `'use strict';
const daysEl = document.getElementById('days');
const empty = document.getElementById('empty');
const newBtn = document.getElementById('new-events');
const eventsSec = document.getElementById('events');
const video = document.getElementById('video');
const nowEl = document.getElementById('now');
const statusEl = document.getElementById('status');
const alertEl = document.getElementById('alert');
const healthEl = document.getElementById('health');
const testBtn = document.getElementById('test-btn');
let liveAbort = null;
// a poll (events, status, notices) that has no answer by then is given up; the next tick asks
// again (one of each kind runs at a time: a hung one must not stop the page's updates)
const POLL_LIMIT_MS = 60000;
// notices: browser notifications for what arrives while the page is open
const noticesEl = document.getElementById('notices');
const notifyBtn = document.getElementById('notify-btn');
let noticeCursor = null;
window.vigilNotified = [];

// ---- events: rows keyed by seq, never rebuilt ------------------------------------------
const rows = new Map();      // seq -> {e, li}
let pending = [];            // events that arrived while the user was in the list
let selected = null;         // the selected event's item id
let wanted = null;           // an item id asked for (hash, vigilSelect) but not listed yet

function fmtTime(ms) { return new Date(ms).toLocaleString(); }
const audioEl = document.getElementById('audio');
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
function fmtClock(ms) { return new Date(ms).toLocaleTimeString(); }
function setStatus(t) { statusEl.textContent = t; }
function pad(n) { return String(n).padStart(2, '0'); }
function dayKey(ms) { const d = new Date(ms); return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()); }
function dayLabel(ms) {
  const k = dayKey(ms);
  if (k === dayKey(Date.now())) return 'Today';
  if (k === dayKey(Date.now() - 86400000)) return 'Yesterday';
  return new Date(ms).toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
}
function describe(e) { return 'clip at ' + fmtClock(e.startedAt) + ', ' + Math.round(e.durationMs / 1000) + ' s'; }

function dayList(e) {
  const key = dayKey(e.startedAt);
  let sec = daysEl.querySelector('section.day[data-day="' + key + '"]');
  if (!sec) {
    sec = document.createElement('section');
    sec.className = 'day';
    sec.dataset.day = key;
    const h = document.createElement('h3');
    h.id = 'day-' + key;
    h.textContent = dayLabel(e.startedAt);
    sec.setAttribute('aria-labelledby', h.id);
    const ul = document.createElement('ul');
    ul.className = 'day-list';
    sec.append(h, ul);
    const later = [...daysEl.children].find((s) => s.dataset.day < key);
    daysEl.insertBefore(sec, later || null);
  }
  return sec.querySelector('ul');
}

function addRow(e) {
  const li = document.createElement('li');
  li.className = 'event';
  li.dataset.seq = String(e.seq);
  li.dataset.itemId = e.itemId;
  li.dataset.startedAt = String(e.startedAt);
  const pick = document.createElement('button');
  pick.type = 'button';
  pick.className = 'pick';
  pick.setAttribute('aria-current', 'false');
  pick.setAttribute('aria-label', 'Play ' + describe(e));
  const img = document.createElement('img');
  img.alt = '';
  if (e.thumbnail !== null) img.src = 'api/items/' + e.thumbnail + '/media';
  const when = document.createElement('span');
  when.textContent = fmtClock(e.startedAt) + ' (' + Math.round(e.durationMs / 1000) + ' s)';
  pick.append(img, when);
  if (hasAudio(e.codec)) {
    const mark = document.createElement('span');
    mark.className = 'audio-mark';
    mark.textContent = '\u266A audio';
    pick.append(mark);
  }
  pick.addEventListener('click', () => select(e.itemId, true));
  const dl = document.createElement('a');
  dl.className = 'btn dl';
  dl.href = 'api/items/' + e.seq + '/media?download=1';
  dl.setAttribute('download', '');
  dl.setAttribute('aria-label', 'Download ' + describe(e));
  dl.title = 'Download';
  dl.textContent = '\\u2193';
  const del = document.createElement('button');
  del.type = 'button';
  del.className = 'del';
  del.setAttribute('aria-label', 'Delete ' + describe(e));
  del.title = 'Delete';
  del.textContent = '\\u2715';
  del.addEventListener('click', () => { remove(e.seq); });
  li.append(pick, dl, del);
  const ul = dayList(e);
  const after = [...ul.children].find((x) => Number(x.dataset.startedAt) < e.startedAt || (Number(x.dataset.startedAt) === e.startedAt && Number(x.dataset.seq) < e.seq));
  ul.insertBefore(li, after || null);
  rows.set(e.seq, { e, li });
}

function dropRow(seq) {
  const r = rows.get(seq);
  if (!r) return;
  const ul = r.li.parentElement;
  r.li.remove();
  rows.delete(seq);
  if (ul && ul.children.length === 0) ul.parentElement.remove();
  if (selected === r.e.itemId) { selected = null; video.removeAttribute('src'); video.load(); nowEl.textContent = ''; setHash(null); }
}

/** The user is pointing at the list or moving through it by keyboard: do not move its rows. */
function userInList() { return eventsSec.matches(':hover') || eventsSec.querySelector(':focus-visible') !== null; }

function flushPending() {
  for (const e of pending) if (!rows.has(e.seq)) addRow(e);
  pending = [];
  newBtn.hidden = true;
  document.body.dataset.pending = '0';
  if (wanted) select(wanted, false);
}

function showEvents(events) {
  const seen = new Set(events.map((e) => e.seq));
  for (const seq of [...rows.keys()]) if (!seen.has(seq)) dropRow(seq);
  const fresh = events.filter((e) => !rows.has(e.seq) && !pending.some((p) => p.seq === e.seq));
  pending = pending.filter((p) => seen.has(p.seq));
  // the first load fills the list; later arrivals wait while the user is in it
  if (rows.size > 0 && userInList()) pending.push(...fresh);
  else for (const e of fresh) addRow(e);
  // an item asked for by id (a notification, a link) is shown at once
  if (pending.length > 0 && (!userInList() || (wanted && pending.some((p) => p.itemId === wanted)))) flushPending();
  newBtn.hidden = pending.length === 0;
  newBtn.textContent = pending.length === 1 ? '1 new event: show' : pending.length + ' new events: show';
  document.body.dataset.pending = String(pending.length);
  empty.hidden = rows.size > 0 || pending.length > 0;
  document.body.dataset.events = String(events.length);
  if (wanted) select(wanted, false);
}
newBtn.addEventListener('click', () => { flushPending(); });
eventsSec.addEventListener('pointerleave', () => { if (pending.length && !eventsSec.querySelector(':focus-visible')) flushPending(); });
eventsSec.addEventListener('focusout', (ev) => { if (pending.length && !eventsSec.contains(ev.relatedTarget) && !eventsSec.matches(':hover')) flushPending(); });

function setHash(itemId) {
  const h = itemId ? '#item=' + itemId : '#events';
  if (location.hash !== h) history.replaceState(null, '', h);
}

function rowOf(itemId) { for (const r of rows.values()) if (r.e.itemId === itemId) return r; return null; }

/** Select (and play) the event of this item id; false when it is not listed (yet). */
function select(itemId, byUser) {
  const r = rowOf(itemId);
  if (!r) { wanted = itemId; document.body.dataset.wanted = itemId; return false; }
  wanted = null;
  delete document.body.dataset.wanted;
  if (selected === itemId && !byUser) return true;
  stopLive();
  showAudio(hasAudio(r.e.codec));
  for (const x of daysEl.querySelectorAll('li.event.active')) { x.classList.remove('active'); x.querySelector('.pick').setAttribute('aria-current', 'false'); }
  r.li.classList.add('active');
  r.li.querySelector('.pick').setAttribute('aria-current', 'true');
  selected = itemId;
  document.body.dataset.selected = itemId;
  document.body.dataset.playing = itemId;
  setHash(itemId);
  showView('events');
  video.src = 'api/items/' + r.e.seq + '/media';
  video.play().catch((err) => setStatus('playback: ' + err));
  nowEl.textContent = 'Clip of ' + fmtTime(r.e.startedAt);
  setStatus('');
  if (!byUser) r.li.scrollIntoView({ block: 'nearest' });
  return true;
}
window.vigilSelect = (itemId) => select(String(itemId), false);

async function remove(seq) {
  const r = rows.get(seq);
  if (!r) return;
  if (!confirm('Delete the ' + describe(r.e) + '? It is removed from this phone.')) return;
  const picks = [...daysEl.querySelectorAll('li.event .pick')];
  const next = picks[picks.indexOf(r.li.querySelector('.pick')) + 1] || picks[picks.indexOf(r.li.querySelector('.pick')) - 1];
  const res = await fetch('api/items/' + seq, { method: 'DELETE', headers: { 'content-type': 'application/json' } });
  if (!res.ok) { let m = 'delete failed (' + res.status + ')'; try { m = (await res.json()).message; } catch (err) { /* keep */ } setStatus(m); return; }
  listChanges++;
  dropRow(seq);
  setStatus('Deleted the ' + describe(r.e) + '.');
  empty.hidden = rows.size > 0;
  if (next && next.isConnected) next.focus();
}

// keyboard: arrows move through the list (and play), Delete deletes
daysEl.addEventListener('keydown', (ev) => {
  const li = ev.target.closest && ev.target.closest('li.event');
  if (!li) return;
  const picks = [...daysEl.querySelectorAll('li.event .pick')];
  const i = picks.indexOf(li.querySelector('.pick'));
  let to = -1;
  if (ev.key === 'ArrowDown') to = Math.min(picks.length - 1, i + 1);
  else if (ev.key === 'ArrowUp') to = Math.max(0, i - 1);
  else if (ev.key === 'Home') to = 0;
  else if (ev.key === 'End') to = picks.length - 1;
  else if (ev.key === 'Delete') { ev.preventDefault(); remove(Number(li.dataset.seq)); return; }
  else return;
  ev.preventDefault();
  const p = picks[to];
  if (!p) return;
  p.focus();
  select(p.parentElement.dataset.itemId, true);
});

// ---- status strip ----------------------------------------------------------------------
function put(id, text, level) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.title = text; // the whole text where the cell cuts it short
  el.dataset.level = level || 'ok';
}
function gb(n) { return (n / 1e9).toFixed(1) + ' GB'; }

async function hubStatus() {
  try {
    const r = await fetch('api/status', { cache: 'no-store', signal: AbortSignal.timeout(POLL_LIMIT_MS) });
    if (!r.ok) return;
    const { hub, relay, device, features } = await r.json();
    const offline = !!(hub && hub.offline);
    alertEl.hidden = !offline;
    alertEl.textContent = offline ? hub.message : '';
    document.body.dataset.hubOffline = offline ? 'yes' : 'no';
    healthEl.hidden = !(hub && hub.health);
    healthEl.textContent = hub && hub.health ? hub.health : '';
    let hubText = device ? device.state + (device.summary ? ' (' + device.summary + ')' : '') : 'state not reported';
    if (hub) hubText += offline ? '; offline' + (hub.lastSeenAt ? ', last heard ' + fmtTime(hub.lastSeenAt) : '') : hub.lastSeenAt ? '; last heard ' + fmtClock(hub.lastSeenAt) : '';
    put('st-hub', hubText, offline ? 'bad' : device && device.state !== 'running' ? 'warn' : 'ok');
    put('st-camera', device && device.camera ? device.camera : 'not reported');
    const sw = hub && hub.health && /software/.test(hub.health);
    put('st-encoder', device && device.encoder ? device.encoder : sw ? 'software (hub notice)' : 'not reported', (device && device.encoder && /^software/.test(device.encoder)) || sw ? 'warn' : 'ok');
    if (device && device.storage) {
      const s = device.storage;
      put('st-storage', gb(s.freeBytes) + ' free of ' + gb(s.totalBytes) + ' (' + s.kind + ')', s.freeBytes < 0.05 * s.totalBytes ? 'bad' : 'ok');
    } else put('st-storage', 'not reported');
    if (!relay) put('st-relay', 'not used');
    else if (relay.unreachableSince) put('st-relay', 'unreachable since ' + fmtTime(relay.unreachableSince) + (relay.reason ? ' (' + relay.reason + ')' : ''), 'bad');
    else put('st-relay', relay.lastContactAt ? 'last contact ' + fmtClock(relay.lastContactAt) : 'not reached yet', relay.lastContactAt ? 'ok' : 'warn');
    document.body.dataset.relay = relay && relay.unreachableSince ? 'unreachable' : 'ok';
    testBtn.hidden = !features.testEvent;
    document.body.dataset.admin = features.admin ? 'yes' : 'no';
    document.body.dataset.phones = features.phones ? 'yes' : 'no';
    document.body.dataset.status = 'loaded';
  } catch (err) { /* the viewer itself is unreachable: refresh() says so */ }
}

testBtn.addEventListener('click', async () => {
  testBtn.disabled = true;
  try {
    const r = await fetch('api/test-event', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const b = await r.json().catch(() => ({ message: 'test event: ' + r.status }));
    setStatus(b.message);
  } catch (err) { setStatus('test event: ' + err); }
  testBtn.disabled = false;
});

// ---- notices ---------------------------------------------------------------------------
function showNotice(n) {
  const li = document.createElement('li');
  li.textContent = (n.trusted ? '' : '[relay-reported] ') + n.title + ': ' + n.body;
  if (!n.trusted) li.className = 'untrusted';
  noticesEl.prepend(li);
  while (noticesEl.children.length > 5) noticesEl.lastElementChild.remove();
  const itemId = n.notice && n.notice.itemId ? n.notice.itemId : null;
  if (itemId) { li.classList.add('opens-clip'); li.addEventListener('click', () => openClip(itemId)); }
  if ('Notification' in window && Notification.permission === 'granted') {
    try {
      const note = new Notification(n.title, { body: n.body, tag: 'vigil-' + n.id, data: { itemId } });
      note.onclick = () => { window.focus(); note.close(); if (itemId) openClip(itemId); };
      window.vigilNotified.push({ id: n.id, title: n.title, body: n.body, trusted: n.trusted, itemId });
      document.body.dataset.notified = String(window.vigilNotified.length);
    } catch (err) { setStatus('notification: ' + err); }
  }
}

async function pollNotices() {
  try {
    const r = await fetch('api/notices?after=' + (noticeCursor === null ? 0 : noticeCursor), { cache: 'no-store', signal: AbortSignal.timeout(POLL_LIMIT_MS) });
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

// a notification was clicked: show that clip (now, or once it has arrived)
function openClip(itemId) {
  if (select(itemId, false)) return;
  setStatus('opening the clip\u2026');
  refresh();
}

if ('serviceWorker' in navigator) {
  // the service worker's notificationclick, when this page was already open
  navigator.serviceWorker.onmessage = (m) => {
    if (m.data && m.data.type === 'open-clip' && typeof m.data.itemId === 'string') openClip(m.data.itemId);
  };
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

// ---- phones page -----------------------------------------------------------------------
const phonesView = document.getElementById('phones-view');
const review = document.getElementById('review');
const phoneList = document.getElementById('phone-list');
const phonesStatus = document.getElementById('phones-status');
const phonesNote = document.getElementById('phones-note');
const inviteBtn = document.getElementById('invite-btn');

function showView(which) {
  const phones = which === 'phones';
  phonesView.hidden = !phones;
  review.hidden = phones;
  document.getElementById('nav-phones').setAttribute('aria-current', phones ? 'page' : 'false');
  document.getElementById('nav-events').setAttribute('aria-current', phones ? 'false' : 'page');
  document.body.dataset.view = which;
  if (phones) loadPhones();
}

async function phonesCall(url, method) {
  const r = await fetch(url, method === 'GET' ? { cache: 'no-store' } : { method, headers: { 'content-type': 'application/json' }, body: '{}' });
  let b = {};
  try { b = await r.json(); } catch (err) { /* empty */ }
  if (!r.ok) throw new Error(b.message || ('error ' + r.status));
  return b;
}

async function loadPhones() {
  phonesNote.textContent = 'Asking the hub which phones are paired\u2026';
  let got;
  try { got = await phonesCall('api/phones', 'GET'); } catch (err) {
    phonesNote.textContent = String(err.message || err);
    inviteBtn.disabled = true;
    phoneList.replaceChildren();
    document.body.dataset.phonesLoaded = 'error';
    return;
  }
  phonesNote.textContent = got.admin ? 'This phone is the admin: it can invite and remove phones.' : 'Only the admin phone can invite or remove phones.';
  inviteBtn.disabled = !got.admin;
  phoneList.replaceChildren();
  for (const p of got.phones) {
    const li = document.createElement('li');
    li.dataset.phoneId = p.phoneId;
    const code = document.createElement('code');
    code.textContent = p.phoneId;
    li.append(code);
    if (p.self) { const b = document.createElement('span'); b.className = 'badge'; b.textContent = 'this phone'; li.append(b); }
    if (p.admin) { const b = document.createElement('span'); b.className = 'badge'; b.textContent = 'admin'; li.append(b); }
    if (!p.self && got.admin) {
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.className = 'remove-phone';
      rm.textContent = 'Remove';
      rm.setAttribute('aria-label', 'Remove phone ' + p.phoneId);
      rm.addEventListener('click', async () => {
        if (!confirm('Remove phone ' + p.phoneId + '? It will no longer receive anything from the hub.')) return;
        rm.disabled = true;
        phonesStatus.textContent = 'Removing ' + p.phoneId + '\\u2026';
        try { await phonesCall('api/phones/' + p.phoneId, 'DELETE'); li.remove(); phonesStatus.textContent = 'Removed phone ' + p.phoneId + '.'; }
        catch (err) { rm.disabled = false; phonesStatus.textContent = String(err.message || err); }
      });
      li.append(rm);
    }
    phoneList.append(li);
  }
  document.body.dataset.phonesLoaded = String(got.phones.length);
}

inviteBtn.addEventListener('click', async () => {
  inviteBtn.disabled = true;
  phonesStatus.textContent = 'Asking the hub for an invite\\u2026';
  try {
    const b = await phonesCall('api/phones/invite', 'POST');
    document.getElementById('invite-text').value = b.command;
    document.getElementById('invite-until').textContent = fmtTime(b.expiresAt);
    document.getElementById('invite-out').hidden = false;
    phonesStatus.textContent = 'Invite ready.';
  } catch (err) { phonesStatus.textContent = String(err.message || err); }
  inviteBtn.disabled = false;
});

function onHash() {
  const h = location.hash;
  const m = /^#item=([0-9a-f]+)$/.exec(h);
  if (m) { showView('events'); select(m[1], false); return; }
  showView(h === '#phones' ? 'phones' : 'events');
}
window.addEventListener('hashchange', onHash);
// a notification opened this page at its clip (?clip=ID): select it once it is listed
{ const clip = new URLSearchParams(location.search).get('clip'); if (clip) select(clip, false); }

// ---- refresh ---------------------------------------------------------------------------
// On a slow machine an answer can take longer than the 2 s tick: one request of each kind at
// a time (two notice polls would raise a notice twice), and an event list asked for before
// this page changed the list (a delete) is stale: applied, it would bring the deleted row back.
/** fn, but a call while one is in flight joins it rather than starting another. */
function single(fn) {
  let running = null;
  return () => { running ??= fn().finally(() => { running = null; }); return running; };
}
const hubStatusOnce = single(hubStatus);
const pollNoticesOnce = single(pollNotices);
let refreshes = 0;
let listChanges = 0;         // bumped when this page changes the list (remove())
const refreshEvents = single(async () => {
  const asked = listChanges;
  try {
    const r = await fetch('api/events', { cache: 'no-store', signal: AbortSignal.timeout(POLL_LIMIT_MS) });
    if (!r.ok) { setStatus('viewer error ' + r.status); return; }
    const { events } = await r.json();
    if (asked !== listChanges) return; // stale: the next tick asks again
    showEvents(events);
    refreshes++;
    document.body.dataset.refreshes = String(refreshes);
  } catch (err) { setStatus('cannot reach the viewer: ' + err); }
});
function refresh() {
  hubStatusOnce();
  pollNoticesOnce();
  return refreshEvents();
}

function stopLive() { if (liveAbort) { liveAbort.abort(); liveAbort = null; } showAudio(false); }

async function live() {
  stopLive();
  delete document.body.dataset.playing;
  if (!('MediaSource' in window)) { setStatus('this browser has no Media Source Extensions'); return; }
  const ac = new AbortController();
  liveAbort = ac;
  nowEl.textContent = 'Live';
  setStatus('starting\\u2026');
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

document.getElementById('live-btn').addEventListener('click', () => {
  for (const x of daysEl.querySelectorAll('li.event.active')) { x.classList.remove('active'); x.querySelector('.pick').setAttribute('aria-current', 'false'); }
  selected = null;
  setHash(null);
  live();
});
setupNotifications();
onHash();
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
    let itemId = null;
    try {
      const data = event.data ? await event.data.arrayBuffer() : new ArrayBuffer(0);
      const r = await fetch('api/push/open', { method: 'POST', body: data, credentials: 'same-origin' });
      if (r.ok) {
        const n = await r.json();
        if (n.cover) {
          // privacy mode cover push (docs/app.md): browsers want a visible notification per
          // push, so keep one quiet notification up rather than announce anything
          const shown = await self.registration.getNotifications();
          if (shown.length > 0) return;
          await self.registration.showNotification('Vigil', { body: 'watching (privacy mode)', tag: 'vigil', silent: true });
          return;
        }
        title = n.title;
        body = (n.trusted ? '' : '[relay-reported] ') + n.body;
        if (typeof n.itemId === 'string') itemId = n.itemId;
      }
    } catch (err) { /* the viewer is not running: the generic text */ }
    await self.registration.showNotification(title, { body, tag: 'vigil', data: { itemId } });
  })());
});

// Show the notice's clip: in an open viewer page (told by message, then focused), or in a
// new one (?clip= selects it at load). Named, so a test can run it without a real click.
self.vigilOpenClip = async (itemId) => {
  const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const page = wins.find((c) => new URL(c.url).pathname === new URL(self.registration.scope).pathname);
  if (page) {
    if (itemId) page.postMessage({ type: 'open-clip', itemId });
    try { await page.focus(); } catch (err) { /* focus needs the click's user activation */ }
    return 'message';
  }
  await self.clients.openWindow(self.vigilClipUrl(itemId));
  return 'window';
};
self.vigilClipUrl = (itemId) => {
  const url = new URL(self.registration.scope);
  if (itemId) url.searchParams.set('clip', itemId);
  return url.href;
};

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const d = event.notification.data;
  event.waitUntil(self.vigilOpenClip(d && typeof d.itemId === 'string' ? d.itemId : null));
});
`;
