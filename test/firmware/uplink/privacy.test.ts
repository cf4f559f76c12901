import t from 'tap';
import type { ConfigError } from '../../../firmware/config/config.js';
import { parseConfig } from '../../../firmware/config/config.js';
import {
  describeCost,
  planOf,
  privacyCost,
  privacySchema,
} from '../../../firmware/uplink/privacy.js';

t.test('off by default; the plans of the two modes', (t) => {
  const c = parseConfig({});
  t.equal(c.privacy.mode, 'off');
  t.equal(planOf(c.privacy), undefined);
  t.match(planOf(privacySchema.parse({ mode: 'constant-rate' })), {
    mode: 'constant-rate',
    scheduledNotices: true,
    slotMs: 5000,
    recordBytes: 65536,
    noticeSlotMs: 60_000,
  });
  t.match(planOf(privacySchema.parse({ mode: 'padding-buckets', notices: 'immediate' })), {
    mode: 'padding-buckets',
    scheduledNotices: false,
    slotMs: 300_000,
    bucketBytes: [65536, 524288, 2097152],
  });
  t.end();
});

t.test('strict validation: each mistake named by its field', (t) => {
  const bad = (privacy: unknown): ConfigError => {
    try {
      parseConfig({ privacy });
    } catch (e) {
      return e as ConfigError;
    }
    throw new Error('accepted');
  };
  t.match(bad({ mode: 'stealth' }).field, 'privacy.mode');
  t.match(bad({ constantRate: { recordKiB: 0 } }).field, 'privacy.constantRate.recordKiB');
  t.match(bad({ constantRate: { recordKiB: 4096 } }).field, 'privacy.constantRate.recordKiB');
  t.match(bad({ constantRate: { slotSeconds: 0.5 } }).field, 'privacy.constantRate.slotSeconds');
  t.match(
    bad({ constantRate: { noticeSlotSeconds: 1 } }).field,
    'privacy.constantRate.noticeSlotSeconds',
  );
  t.match(bad({ buckets: { sizesKiB: [512, 64] } }).message, /sizes must be strictly ascending/);
  t.match(bad({ buckets: { sizesKiB: [] } }).field, 'privacy.buckets.sizesKiB');
  t.match(bad({ rate: 1 }).message, /unknown field "privacy.rate"/);
  t.match(bad({ notices: 'later' }).field, 'privacy.notices');
  t.end();
});

t.test('the cost estimate', (t) => {
  const off = privacyCost(privacySchema.parse({}));
  t.equal(off.upBytesPerDay, off.baselineBytesPerDay);
  t.equal(describeCost(off), 'off (the relay sees when events happen)');
  const cr = privacyCost(privacySchema.parse({ mode: 'constant-rate' }));
  // 17 280 data records of 64 KiB + 150, 1 440 notice records of 2 KiB + 150
  t.equal(cr.upBytesPerDay, 17_280 * (65_536 + 150) + 1440 * (2048 + 150));
  t.equal(cr.pushesPerDay, 1440);
  t.equal(cr.relayItemsPerOfflineDay, 18_720);
  t.ok(cr.addedLatencyMs.mean > 60_000, 'a 2.5 MB clip takes minutes at 64 KiB / 5 s');
  t.match(describeCost(cr), /^constant-rate: ~1\.06 GiB\/day per phone/);
  const immediate = privacyCost(
    privacySchema.parse({ mode: 'constant-rate', notices: 'immediate' }),
  );
  t.same(immediate.noticeLatencyMs, { mean: 0, max: 0 });
  t.equal(immediate.pushesPerDay, 20);
  const pb = privacyCost(privacySchema.parse({ mode: 'padding-buckets' }));
  t.ok(
    pb.upBytesPerDay > pb.baselineBytesPerDay && pb.upBytesPerDay < 1.2 * pb.baselineBytesPerDay,
  );
  t.same(pb.addedLatencyMs, { mean: 150_000, max: 300_000 });
  t.end();
});
