/**
 * Issue #20 item 4: the relay's quotas still work with cover records. A phone
 * that syncs only every 6 hours, a relay whose per-device item cap (60) the
 * constant-rate mode fills in under two hours: past the cap the relay refuses
 * the hub's records (507, as for any upload), the hub skips those slots and
 * keeps the real bytes queued, and once the phone acknowledged what the relay
 * held, the queued items leave. Every clip arrives, the relay never holds more
 * than its cap, and it keeps nothing after the last sync. The relay knows
 * nothing of the mode: the cap is its ordinary one (relay/limits.ts).
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
