/**
 * What each privacy mode costs (issue #20), at the default settings: bandwidth
 * per phone per day, relay storage a phone away for a day leaves behind, and
 * the added delivery delay of a clip — measured on a compressed stretch of day
 * (the phone stays away until its end, so the relay's storage is read, not derived)
 * (dev/fixtures/privacy-day.ts: real MLS hub, uplink, relay over HTTP, phone)
 * and scaled to 24 h, next to the estimate `vigil hub status` shows
 * (firmware/uplink/privacy.ts `privacyCost`).
 *
 *   npx tsx bench/privacy-modes.ts [--hours 2] [--events-per-day 20] [--clip-kb 2500]
 */
import { parseArgs } from 'node:util';
import { simulateDay } from '../dev/fixtures/privacy-day.js';
import { privacyCost, privacySchema, type PrivacyConfig } from '../firmware/uplink/privacy.js';

const { values } = parseArgs({
  options: {
    hours: { type: 'string', default: '2' },
    'events-per-day': { type: 'string', default: '20' },
    'clip-kb': { type: 'string', default: '2500' },
  },
});
const hours = Number(values.hours);
const perDay = Number(values['events-per-day']);
const clipBytes = Number(values['clip-kb']) * 1000;
const thumbnailBytes = 40_000;
if (!(hours > 0 && hours <= 24) || !(perDay > 0) || !(clipBytes > 0))
  throw new Error('bench/privacy-modes: --hours 0..24, --events-per-day > 0, --clip-kb > 0');
const events = Math.max(2, Math.round((perDay * hours) / 24));
const scale = 24 / hours;
const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`;

console.log(
  `privacy modes at default settings: ${hours} h simulated (x${scale.toFixed(1)} to a day), ` +
    `${events} events (${perDay}/day), clip ${clipBytes / 1000} kB + thumbnail ${thumbnailBytes / 1000} kB`,
);
console.log(
  'mode             up/day/phone   overhead   relay, phone away a day (measured)  clip delay mean/max   estimate up/day  wall',
);
let offMean = 0;
for (const mode of ['off', 'constant-rate', 'padding-buckets'] as const) {
  const cfg: PrivacyConfig = privacySchema.parse({ mode });
  const t0 = Date.now();
  const r = await simulateDay({
    privacy: cfg,
    seed: 7,
    dayMs: hours * 3_600_000,
    events,
    clipBytes,
    thumbnailBytes,
    // the phone stays away all day: what the relay holds at its one sync is measured storage
    phoneSyncMs: 0,
  });
  const inDay = r.wire.filter((w) => w.t >= 0 && w.t < r.dayMs); // not the warm-up before the day
  const up = inDay.reduce((s, w) => s + w.bytes, 0) * scale;
  // relay storage as the phone found it (listed sizes), less what the hub sent outside the day
  const out = r.wire.filter((w) => w.t < 0 || w.t >= r.dayMs);
  const relay = (r.relayPeakBytes - out.reduce((s, w) => s + w.bytes, 0)) * scale;
  const dayItems = new Set(inDay.map((w) => w.item));
  const outItems = new Set(out.map((w) => w.item).filter((id) => !dayItems.has(id)));
  const relayItems = (r.relayPeakItems - outItems.size) * scale;
  const payload = r.payloadBytes * scale;
  const delays = r.events.map((e, i) => (r.sentAt[i] ?? r.dayMs) - e);
  const mean = delays.reduce((a, b) => a + b, 0) / delays.length;
  if (mode === 'off') offMean = mean;
  const max = Math.max(...delays);
  const est = privacyCost(cfg, { eventsPerDay: perDay, clipBytes, thumbnailBytes });
  console.log(
    `${mode.padEnd(16)} ${mib(up).padStart(12)}   ${`${(up / payload).toFixed(2)}x`.padStart(8)}   ${`${mib(relay)}, ${Math.round(relayItems)} items`.padStart(26)}  ${`${((mean - offMean) / 1000).toFixed(0)} s / ${((max - offMean) / 1000).toFixed(0)} s`.padStart(20)}   ${mib(est.upBytesPerDay).padStart(14)}  ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
  if (r.delivered.some((d) => d === undefined))
    console.log(
      `  (${r.delivered.filter((d) => d === undefined).length} clip(s) not yet on the phone at the end)`,
    );
}
