/**
 * Issue #20 acceptance: a day at the front door compressed into minutes (one
 * virtual clock; real MLS hub, uplink, relay over HTTP and phone), events at
 * random times (fixed seed). From the relay's access log of the hub's uploads
 * (time, route, group, size), a simple adversary — a byte-count threshold per
 * 30-minute window, trained on half the windows, tested on the other half —
 * tells event windows from idle ones with the mode off, and cannot beat the
 * majority-class baseline in constant-rate mode, where every window looks the
 * same request for request. The phone still receives every clip, and the relay
 * keeps nothing once it synced (cover records are acknowledged and deleted).
 */
import t from 'tap';
import { MLS_RECORD_OVERHEAD, NOTICE_RECORD_BYTES } from '../../firmware/uplink/privacy.js';
import { simulateDay, type DayResult, type WireEntry } from '../../dev/fixtures/privacy-day.js';

const WINDOW_MS = 30 * 60_000;
const SEED = 20;

interface Window {
  readonly event: boolean;
  readonly bytes: number;
  readonly requests: number;
  /** Every request: offset in the window, route, group, size. */
  readonly signature: string;
}

function windows(r: DayResult): Window[] {
  const n = Math.floor(r.dayMs / WINDOW_MS);
  const out: Window[] = [];
  for (let i = 0; i < n; i++) {
    const from = i * WINDOW_MS;
    const inside = (w: WireEntry): boolean => w.t >= from && w.t < from + WINDOW_MS;
    const ws = r.wire.filter(inside);
    out.push({
      event: r.events.some((e) => e >= from && e < from + WINDOW_MS),
      bytes: ws.reduce((s, w) => s + w.bytes, 0),
      requests: ws.length,
      signature: ws
        .map((w) => `${w.t - from}:${w.method} ${w.route}:${w.group}:${w.kind}:${w.bytes}`)
        .sort()
        .join('|'),
    });
  }
  return out;
}

/** Train a one-feature threshold classifier on even windows, test it on odd ones. */
function adversary(ws: readonly Window[], feature: (w: Window) => number) {
  const train = ws.filter((_, i) => i % 2 === 0);
  const test = ws.filter((_, i) => i % 2 === 1);
  const candidates = [...new Set(train.map(feature))].sort((a, b) => a - b);
  let best = { threshold: -Infinity, above: true, acc: 0 };
  for (const threshold of [-Infinity, ...candidates])
    for (const above of [true, false]) {
      const acc =
        train.filter((w) => (feature(w) > threshold === above) === w.event).length / train.length;
      if (acc > best.acc) best = { threshold, above, acc };
    }
  const accuracy =
    test.filter((w) => (feature(w) > best.threshold === best.above) === w.event).length /
    test.length;
  const positives = test.filter((w) => w.event).length;
  const baseline = Math.max(positives, test.length - positives) / test.length;
  return { accuracy, baseline };
}

t.test('privacy: a compressed day seen from the relay, mode off vs constant-rate', async (t) => {
  const common = {
    seed: SEED,
    events: 12,
    clipBytes: 40_000,
    thumbnailBytes: 4_000,
    phoneSyncMs: 2 * 3_600_000,
  } as const;
  const off = await simulateDay({ ...common, privacy: { mode: 'off' } });
  const cr = await simulateDay({
    ...common,
    privacy: {
      mode: 'constant-rate',
      constantRate: { recordKiB: 16, slotSeconds: 120, noticeSlotSeconds: 600 },
    },
  });

  for (const [name, r] of [
    ['off', off],
    ['constant-rate', cr],
  ] as const) {
    t.equal(r.delivered.filter((d) => d !== undefined).length, 12, `${name}: every clip delivered`);
    t.equal(r.phoneStored, 24, `${name}: clips and thumbnails stored on the phone`);
    t.equal(r.relayLeft, 0, `${name}: nothing left on the relay after the phone synced`);
  }

  const wOff = windows(off);
  const wCr = windows(cr);
  t.ok(wOff.some((w) => w.event) && wOff.some((w) => !w.event), 'the day has both kinds of window');

  const bytesOff = adversary(wOff, (w) => w.bytes);
  const reqOff = adversary(wOff, (w) => w.requests);
  t.comment(
    `mode off: bytes classifier ${bytesOff.accuracy} (baseline ${bytesOff.baseline}), requests ${reqOff.accuracy}`,
  );
  t.ok(bytesOff.accuracy >= 0.95, 'mode off: per-window bytes give the events away');
  t.ok(bytesOff.accuracy > bytesOff.baseline + 0.1, 'mode off: far better than chance');

  const bytesCr = adversary(wCr, (w) => w.bytes);
  const reqCr = adversary(wCr, (w) => w.requests);
  t.comment(
    `constant-rate: bytes classifier ${bytesCr.accuracy} (baseline ${bytesCr.baseline}), requests ${reqCr.accuracy}`,
  );
  t.ok(bytesCr.accuracy <= bytesCr.baseline, 'constant-rate: bytes no better than chance');
  t.ok(reqCr.accuracy <= reqCr.baseline, 'constant-rate: request counts no better than chance');
  // stronger than any classifier: every window is the same, request for request
  t.equal(new Set(wCr.map((w) => w.signature)).size, 1, 'constant-rate: every window identical');
  t.equal(
    new Set(cr.wire.map((w) => `${w.group}:${w.bytes}`)).size,
    2,
    'constant-rate: two record sizes only (data and notice lanes)',
  );
  t.ok(new Set(wOff.map((w) => w.signature)).size > 1, 'mode off: windows differ');
  // the cost estimate's MLS overhead is the real one (firmware/uplink/privacy.ts)
  const data = cr.wire.find((w) => w.group === 'config');
  const notice = cr.wire.find((w) => w.group === 'notification');
  t.equal((data?.bytes ?? 0) - 16 * 1024, MLS_RECORD_OVERHEAD, 'data record overhead');
  t.equal(
    (notice?.bytes ?? 0) - NOTICE_RECORD_BYTES,
    MLS_RECORD_OVERHEAD - 4,
    'notice record overhead',
  );
});
