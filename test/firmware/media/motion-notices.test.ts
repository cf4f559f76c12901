import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import { noticeOf, sendMotionNotices } from '../../../firmware/media/motion-notices.js';
import type { MediaEvent } from '../../../firmware/media/pipeline.js';
import { NoticeMessage } from '../../../protocol/e2ee-frames.js';

t.test('a clip start raises one motion notice; other events none', async (t) => {
  t.same(
    noticeOf({
      type: 'clip-started',
      itemId: 'abcdef0123456789',
      epoch: 3n,
      at: 1000.7,
      preRollS: 2,
      reason: 'motion',
    }),
    { at: 1000, kind: 'motion', itemId: 'abcdef0123456789', text: 'motion detected' },
  );
  t.equal(noticeOf({ type: 'motion-start', source: 'video', at: 1 }), undefined);
  let listener: ((e: MediaEvent) => void) | undefined;
  const sent: unknown[] = [];
  const logger = new MemoryLogger('hub');
  let fail = false;
  const off = sendMotionNotices({
    media: {
      on(l) {
        listener = l;
        return () => (listener = undefined);
      },
    },
    channel: {
      sendNotice(n) {
        sent.push(n);
        return fail ? Promise.reject(new Error('relay down')) : Promise.resolve();
      },
    },
    logger,
  });
  listener?.({ type: 'motion-start', source: 'video', at: 1 });
  listener?.({
    type: 'clip-started',
    itemId: 'aa11bb22',
    epoch: 1n,
    at: 5,
    preRollS: 0,
    reason: 'm',
  });
  t.same(sent, [{ at: 5, kind: 'motion', itemId: 'aa11bb22', text: 'motion detected' }]);
  fail = true;
  listener?.({
    type: 'clip-started',
    itemId: 'cc33dd44',
    epoch: 2n,
    at: 6,
    preRollS: 0,
    reason: 'm',
  });
  await new Promise<void>((resolve) => setImmediate(resolve));
  t.ok(logger.lines.some((l) => l.includes('motion notice not sent') && l.includes('relay down')));
  off();
  t.equal(listener, undefined, 'unsubscribed');
});

t.test('a clip opened by the detector: the notice names the objects, best first', async (t) => {
  const n = noticeOf({
    type: 'clip-started',
    itemId: 'abcdef01',
    epoch: 1n,
    at: 7,
    preRollS: 1,
    reason: 'object (person:0.82,car:0.51)',
    objects: [
      { class: 'person', score: 0.8234 },
      { class: 'car', score: 0.51 },
    ],
  });
  t.same(n, {
    at: 7,
    kind: 'motion',
    itemId: 'abcdef01',
    text: 'person, car detected (0.82)',
    objects: [
      { class: 'person', score: 0.823 },
      { class: 'car', score: 0.51 },
    ],
  });
  // what the phones receive must pass the sealed-notice schema
  t.ok(NoticeMessage.safeParse({ t: 'notice', ...n }).success);
});
