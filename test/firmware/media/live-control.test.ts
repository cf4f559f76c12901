import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import type { AppHandler, ConfigChannel } from '../../../firmware/mls/config-channel.js';
import { LiveControl, refusalFor } from '../../../firmware/media/live-control.js';
import type { LiveMedia } from '../../../firmware/media/live-control.js';
import type { LiveSession } from '../../../firmware/media/live.js';
import type { PipelineState } from '../../../firmware/media/pipeline.js';
import {
  LIVE_REFUSED_TOPIC,
  LIVE_REQUEST_TOPIC,
  LIVE_STARTED_TOPIC,
  LIVE_STOP_TOPIC,
  decodeControl,
  encodeControl,
} from '../../../protocol/live-control.js';
import { manualClock } from '../../fixtures/manual-clock.js';

class FakeChannel implements ConfigChannel {
  readonly handlers = new Map<string, AppHandler>();
  readonly sent: { topic: string; body: Uint8Array; phoneId: string | undefined }[] = [];
  onApp(topic: string, handler: AppHandler): () => void {
    this.handlers.set(topic, handler);
    return () => this.handlers.delete(topic);
  }
  sendApp(topic: string, body: Uint8Array, phoneId?: string): Promise<void> {
    this.sent.push({ topic, body, phoneId });
    return Promise.resolve();
  }
  async deliver(phoneId: string, topic: string, body: Uint8Array): Promise<void> {
    const h = this.handlers.get(topic);
    if (!h) throw new Error(`no handler for ${topic}`);
    await h({ phoneId, topic, body });
  }
}

class FakeMedia implements LiveMedia {
  state: PipelineState = 'running';
  starts = 0;
  failWith: Error | undefined;
  readonly sessions: { stopped: boolean; end: (why: string) => void }[] = [];
  status(): { state: PipelineState } {
    return { state: this.state };
  }
  startLive(opts: { maxS: number }): Promise<LiveSession> {
    if (this.failWith) return Promise.reject(this.failWith);
    this.starts++;
    let end: (why: string) => void = () => undefined;
    const ended = new Promise<string>((r) => (end = r));
    const rec = { stopped: false, end, maxS: opts.maxS };
    this.sessions.push(rec);
    return Promise.resolve({
      itemId: `a${this.starts}`,
      epoch: 1n,
      ended,
      stop: () => {
        rec.stopped = true;
        end('stopped');
        return Promise.resolve();
      },
    });
  }
}

const request = (maxSeconds: number): Uint8Array =>
  encodeControl(LIVE_REQUEST_TOPIC, { v: 1, maxSeconds });

function setup(o: { locked?: boolean; media?: FakeMedia | undefined } = {}) {
  const channel = new FakeChannel();
  const media = 'media' in o ? o.media : new FakeMedia();
  const { clock, advance } = manualClock();
  const logger = new MemoryLogger();
  const control = new LiveControl({
    channel,
    media: () => media,
    logger,
    clock,
    idleMs: 60_000,
    storageLocked: () => o.locked ?? false,
  });
  return { channel, media, advance, control, logger };
}

t.test('refusal reasons follow the pipeline state and the storage lock', async (t) => {
  t.equal(refusalFor('running', false), undefined);
  t.equal(refusalFor('running', true), 'storage-locked');
  for (const s of ['stopped', 'camera-missing', 'failed', undefined] as const)
    t.equal(refusalFor(s, false), 'camera-down', String(s));
  for (const s of ['starting', 'restarting'] as const) t.equal(refusalFor(s, false), 'busy', s);
});

t.test('a request starts a session and answers live-started to that phone', async (t) => {
  const { channel, media, control } = setup();
  await channel.deliver('p1', LIVE_REQUEST_TOPIC, request(30));
  t.equal(media?.starts, 1);
  t.equal(channel.sent.length, 1);
  const s = channel.sent[0]!;
  t.equal(s.topic, LIVE_STARTED_TOPIC);
  t.equal(s.phoneId, 'p1');
  const d = decodeControl(LIVE_STARTED_TOPIC, s.body);
  t.same(d.ok ? d.value : undefined, { v: 1, itemId: 'a1', maxSeconds: 30 });
  t.ok(control.active);
  // a second phone (or a renewal) shares the running session
  await channel.deliver('p2', LIVE_REQUEST_TOPIC, request(30));
  t.equal(media?.starts, 1, 'no second session');
  t.equal(channel.sent[1]?.phoneId, 'p2');
  t.equal(channel.sent[1]?.topic, LIVE_STARTED_TOPIC);
});

t.test('refusals say why, to the phone that asked', async (t) => {
  const cases: [string, () => ReturnType<typeof setup>, string][] = [
    ['locked', () => setup({ locked: true }), 'storage-locked'],
    ['no pipeline', () => setup({ media: undefined }), 'camera-down'],
    [
      'camera missing',
      () => {
        const m = new FakeMedia();
        m.state = 'camera-missing';
        return setup({ media: m });
      },
      'camera-down',
    ],
    [
      'encoder restarting',
      () => {
        const m = new FakeMedia();
        m.state = 'restarting';
        return setup({ media: m });
      },
      'busy',
    ],
    [
      'no init segment yet',
      () => {
        const m = new FakeMedia();
        m.failWith = new Error('no video stream yet');
        return setup({ media: m });
      },
      'no-video-yet',
    ],
    [
      'sealer failure',
      () => {
        const m = new FakeMedia();
        m.failWith = new Error('no recipients');
        return setup({ media: m });
      },
      'error',
    ],
  ];
  for (const [name, make, reason] of cases) {
    const { channel, control } = make();
    await channel.deliver('p9', LIVE_REQUEST_TOPIC, request(10));
    const s = channel.sent[0];
    t.equal(s?.topic, LIVE_REFUSED_TOPIC, name);
    t.equal(s?.phoneId, 'p9');
    const d = decodeControl(LIVE_REFUSED_TOPIC, s?.body ?? new Uint8Array());
    t.equal(d.ok ? d.value.reason : undefined, reason, `${name}: ${reason}`);
    t.notOk(control.active);
  }
});

t.test('live-stop ends the session; a bad request is dropped with a warning', async (t) => {
  const { channel, media, control, logger } = setup();
  await channel.deliver('p1', LIVE_REQUEST_TOPIC, request(30));
  await channel.deliver('p1', LIVE_STOP_TOPIC, encodeControl(LIVE_STOP_TOPIC, { v: 1 }));
  t.equal(media?.sessions[0]?.stopped, true);
  t.notOk(control.active);
  await channel.deliver('p1', LIVE_REQUEST_TOPIC, Buffer.from('{"v":1,"maxSeconds":99999}'));
  t.equal(channel.sent.length, 1, 'nothing answered to a malformed request');
  t.ok(logger.lines.some((l) => l.includes('bad live request') && l.includes('maxSeconds')));
  await channel.deliver('p1', LIVE_STOP_TOPIC, Buffer.from('[]'));
  t.ok(logger.lines.some((l) => l.includes('bad live stop')));
});

t.test('no renewal for idleMs stops the session; a renewal keeps it', async (t) => {
  const { channel, media, advance, control } = setup();
  await channel.deliver('p1', LIVE_REQUEST_TOPIC, request(300));
  advance(59_000);
  await channel.deliver('p1', LIVE_REQUEST_TOPIC, request(300));
  advance(59_000);
  t.equal(media?.sessions[0]?.stopped, false, 'renewed within idleMs');
  advance(1000);
  await Promise.resolve();
  t.equal(media?.sessions[0]?.stopped, true, 'stopped when nobody renewed');
  t.notOk(control.active);
});

t.test(
  'a session that ends by itself (time limit) is forgotten; close ends a running one',
  async (t) => {
    const { channel, media, control } = setup();
    await channel.deliver('p1', LIVE_REQUEST_TOPIC, request(5));
    media?.sessions[0]?.end('time limit');
    await new Promise((r) => setImmediate(r));
    t.notOk(control.active, 'ended at its time limit');
    await channel.deliver('p1', LIVE_REQUEST_TOPIC, request(5));
    t.equal(media?.starts, 2, 'the next request starts a new session');
    await control.close();
    t.equal(media?.sessions[1]?.stopped, true);
    t.equal(channel.handlers.size, 0, 'handlers removed');
  },
);
