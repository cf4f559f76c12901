import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import {
  conditionNow,
  conditionOf,
  sendHealthNotices,
} from '../../../firmware/media/health-notices.js';
import type { MediaEvent, MediaStatus } from '../../../firmware/media/pipeline.js';
import { HUB_HEALTH_TOPIC, decodeControl } from '../../../protocol/live-control.js';
import { manualClock } from '../../fixtures/manual-clock.js';

type Now = Pick<MediaStatus, 'state' | 'camera' | 'encoder'>;
const RUNNING: Now = {
  state: 'running',
  camera: { id: 'cam', kind: 'v4l2', present: true },
  encoder: { path: 'v4l2-m2m', rejected: [], restarts: 0 },
};

t.test('conditions from media events', async (t) => {
  t.equal(conditionOf({ type: 'camera-unplugged', at: 1 })?.condition, 'camera-failed');
  t.equal(conditionOf({ type: 'state', state: 'failed', at: 1 })?.condition, 'camera-failed');
  t.equal(conditionOf({ type: 'state', state: 'running', at: 1 }), undefined);
  t.equal(conditionOf({ type: 'camera-replugged', at: 1 })?.condition, 'recovered');
  t.equal(
    conditionOf({ type: 'encoder-started', path: 'software', pid: 1, at: 1 })?.condition,
    'encoder-software',
  );
  t.equal(conditionOf({ type: 'encoder-started', path: 'v4l2-m2m', pid: 1, at: 1 }), undefined);
  t.equal(conditionOf({ type: 'motion-start', source: 'video', at: 1 }), undefined);
});

t.test('a notice when a condition starts, once; recovery clears it', async (t) => {
  const { clock, advance } = manualClock();
  advance(42);
  let listener: (e: MediaEvent) => void = () => undefined;
  const sent: string[] = [];
  const off = sendHealthNotices({
    media: {
      on: (l) => {
        listener = l;
        return () => {
          listener = () => undefined;
        };
      },
      status: () => RUNNING,
    },
    channel: {
      sendApp: (topic, body) => {
        t.equal(topic, HUB_HEALTH_TOPIC);
        const d = decodeControl(HUB_HEALTH_TOPIC, body);
        if (!d.ok) throw d.error;
        t.equal(d.value.at, 42);
        sent.push(d.value.condition);
        return Promise.resolve();
      },
    },
    logger: new MemoryLogger(),
    clock,
  });
  listener({ type: 'camera-replugged', at: 1 });
  t.same(sent, [], 'no recovery without a failure');
  listener({ type: 'camera-unplugged', at: 1 });
  listener({ type: 'state', state: 'failed', at: 1 });
  t.same(sent, ['camera-failed'], 'sent once');
  listener({ type: 'camera-replugged', at: 2 });
  listener({ type: 'encoder-started', path: 'software', pid: 3, at: 3 });
  t.same(sent, ['camera-failed', 'recovered', 'encoder-software']);
  off();
  listener({ type: 'camera-unplugged', at: 4 });
  t.equal(sent.length, 3, 'nothing after unsubscribe');
});

t.test('the present condition is sent when the notices start after the pipeline', async (t) => {
  t.equal(conditionNow(RUNNING), undefined, 'a healthy pipeline: nothing');
  const soft: Now = { ...RUNNING, encoder: { ...RUNNING.encoder, path: 'software' } };
  t.equal(conditionNow(soft)?.condition, 'encoder-software');
  t.equal(conditionNow({ ...soft, state: 'failed' })?.condition, 'camera-failed');
  t.equal(
    conditionNow({
      ...RUNNING,
      state: 'camera-missing',
      camera: { ...RUNNING.camera, present: false },
    })?.detail,
    'the camera was unplugged',
  );

  // the software encoder started during media.start(), before the config channel's services
  let listener: (e: MediaEvent) => void = () => undefined;
  const sent: string[] = [];
  sendHealthNotices({
    media: {
      on: (l) => {
        listener = l;
        return () => undefined;
      },
      status: () => soft,
    },
    channel: {
      sendApp: (_topic, body) => {
        const d = decodeControl(HUB_HEALTH_TOPIC, body);
        if (!d.ok) throw d.error;
        sent.push(d.value.condition);
        return Promise.resolve();
      },
    },
    logger: new MemoryLogger(),
  });
  t.same(sent, ['encoder-software'], 'sent at once');
  listener({ type: 'encoder-started', path: 'software', pid: 4, at: 4 });
  t.same(sent, ['encoder-software'], 'not again for the same condition');
});
