/**
 * Issue #20 item 4: the relay's quotas and age limit still work with cover
 * records.
 *
 * Quota: A phone
 * that syncs only every 6 hours, a relay whose per-device item cap (60) the
 * constant-rate mode fills in under two hours: past the cap the relay refuses
 * the hub's records (507, as for any upload), the hub skips those slots and
 * keeps the real bytes queued, and once the phone acknowledged what the relay
 * held, the queued items leave. Every clip arrives, the relay never holds more
 * than its cap, and it keeps nothing after the last sync. The relay knows
 * nothing of the mode: the cap is its ordinary one (relay/limits.ts).
 *
 * Age limit: a phone that syncs every 8 hours, a relay that deletes what it
 * has held for 3 hours, read or not. Records — real and cover alike — older
 * than that are gone when the phone comes, so the events whose records were
 * all sent in the last 3 hours before a sync arrive and the older ones do not;
 * the items after a loss are not held back (the phone discards an item that
 * lost bytes, and the hub's config channel answers its heartbeat with the
 * commits of the lost items: catch-up, as with the mode off).
 * Same compressed day as test/integration/privacy-day.test.ts
 * (dev/fixtures/privacy-day.ts: real MLS hub, uplink, relay over HTTP, phone).
 */
import t from 'tap';
import { simulateDay } from '../../dev/fixtures/privacy-day.js';

const CAP = 60;

t.test('constant-rate mode against a relay at its item cap: nothing lost, cap held', async (t) => {
  const r = await simulateDay({
    seed: 21,
    events: 12,
    clipBytes: 40_000,
    thumbnailBytes: 4_000,
    phoneSyncMs: 6 * 3_600_000,
    relayLimits: { maxDeviceItems: CAP },
    privacy: {
      mode: 'constant-rate',
      constantRate: { recordKiB: 16, slotSeconds: 120, noticeSlotSeconds: 600 },
    },
  });
  t.comment(
    `slots refused: ${r.failedSlots}, most items on the relay at a sync: ${r.relayPeakItems}`,
  );
  t.ok(r.failedSlots > 0, 'the relay refused slots once its cap was reached (the cap applies)');
  const refused = r.wire.filter((w) => w.status !== 200 && w.status !== 201);
  t.ok(refused.length > 0, `the relay's access log shows ${refused.length} refused uploads`);
  t.same(
    [...new Set(refused.map((w) => w.status))],
    [507],
    'every refusal a 507 (the ordinary item cap), nothing else failed',
  );
  t.ok(r.relayPeakItems <= CAP, `the relay never held more than ${CAP} items`);
  t.equal(r.relayPeakItems, CAP, 'and it was full between syncs');
  t.equal(
    r.delivered.filter((d) => d !== undefined).length,
    12,
    'every clip arrived all the same (the hub kept the real bytes queued)',
  );
  t.equal(r.phoneStored, 24, 'clips and thumbnails stored on the phone');
  t.equal(r.relayLeft, 0, 'nothing left on the relay after the last sync');
});

t.test(
  'constant-rate mode and the relay age limit: what is younger arrives, nothing blocks',
  async (t) => {
    const SYNC = 8 * 3_600_000;
    const MAX_AGE = 3 * 3_600_000;
    const r = await simulateDay({
      seed: 22,
      events: 12,
      clipBytes: 40_000,
      thumbnailBytes: 4_000,
      phoneSyncMs: SYNC,
      relayMaxAgeMs: MAX_AGE,
      hubAnswers: true,
      privacy: {
        mode: 'constant-rate',
        constantRate: { recordKiB: 16, slotSeconds: 120, noticeSlotSeconds: 600 },
      },
    });
    t.ok(r.relayExpired > 0, `the age limit deleted records (${r.relayExpired})`);
    const expected: (boolean | undefined)[] = [];
    for (const [i, e] of r.events.entries()) {
      const sent = r.sentAt[i] ?? Infinity;
      // the sync that found this event's records, and the oldest record it could still read
      const sync = r.syncs.find((s) => s >= sent) ?? Infinity;
      const cutoff = sync - MAX_AGE;
      if (e >= cutoff) expected[i] = true;
      else if (sent < cutoff) expected[i] = false;
      // else: the age limit cut through the event's records; either way is fine
    }
    const got = r.delivered.map((d) => d !== undefined);
    t.same(
      got.filter((_, i) => expected[i] !== undefined),
      expected.filter((x) => x !== undefined),
      'delivered exactly the events whose records were younger than the age limit at the sync',
    );
    const firstLost = got.indexOf(false);
    t.ok(
      firstLost >= 0 && got.some((d, i) => d && i > firstLost),
      'events after a lost one still arrive (nothing waits forever)',
    );
    t.equal(r.phoneStored, 2 * got.filter(Boolean).length, 'each with its thumbnail');
    t.equal(r.relayLeft, 0, 'nothing left on the relay after the last sync');
  },
);
