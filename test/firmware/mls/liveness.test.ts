import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import { HubLiveness } from '../../../firmware/mls/liveness.js';
import { HUB_ALIVE_TOPIC, decodeControl } from '../../../protocol/live-control.js';
import { manualClock } from '../../fixtures/manual-clock.js';

t.test('sealed hub-alive beats at start and on every interval, until stopped', async (t) => {
  const { clock, advance } = manualClock();
  advance(1_000_000);
  const sent: { topic: string; body: Uint8Array }[] = [];
  let fail = false;
  const logger = new MemoryLogger();
  const l = new HubLiveness({
    channel: {
      sendApp: (topic, body) => {
        sent.push({ topic, body });
        return fail ? Promise.reject(new Error('relay down')) : Promise.resolve();
      },
    },
    logger,
    clock,
    intervalMs: 60_000,
  });
  l.start();
  l.start();
  t.equal(sent.length, 1, 'one beat at start (start is idempotent)');
  const first = decodeControl(HUB_ALIVE_TOPIC, sent[0]!.body);
  t.same(first.ok ? first.value : undefined, { v: 1, at: 1_000_000, intervalSeconds: 60 });
  advance(59_999);
  t.equal(sent.length, 1);
  advance(1);
  t.equal(sent.length, 2, 'the next beat after the interval');
  fail = true;
  advance(60_000);
  await new Promise((r) => setImmediate(r));
  t.ok(
    logger.lines.some((l) => l.includes('hub-alive not sent')),
    'a failed beat is logged',
  );
  fail = false;
  advance(60_000);
  t.equal(sent.length, 4, 'and the schedule goes on');
  await new Promise((r) => setImmediate(r));
  t.equal(l.sent, 3);
  l.stop();
  advance(600_000);
  t.equal(sent.length, 4, 'no beat after stop');
  t.equal(
    sent.every((s) => s.topic === HUB_ALIVE_TOPIC),
    true,
  );
});
