import t from 'tap';
import {
  ClipRecorder,
  GopRing,
  clipConfigSchema,
  objectsNote,
} from '../../../firmware/media/clips.js';
import type { ClipConfigInput, ClipEvent } from '../../../firmware/media/clips.js';
import { Fmp4Splitter } from '../../../firmware/media/fmp4.js';
import type { Fragment, InitSegment } from '../../../firmware/media/fmp4.js';
import { MemoryLogger } from '../../../base/logger.js';
import { makeFmp4, probe } from './fixtures.js';
import { MemorySealer } from './memory-sealer.js';

// 12 one-second GOPs of real H.264 fMP4, replayed as if live.
const bytes = await makeFmp4({ seconds: 12, fps: 5, gop: 5 });
let init: InitSegment | undefined;
const frags: Fragment[] = [];
new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => frags.push(f) }).push(bytes);
if (!init || frags.length !== 12) throw new Error(`fixture: ${frags.length} fragments`);
const INIT = init;

interface Rig {
  rec: ClipRecorder;
  sealer: MemorySealer;
  events: ClipEvent[];
  clock: { now: number };
  feed: (i: number) => void;
}

function rig(config: ClipConfigInput, thumbs = false): Rig {
  const sealer = new MemorySealer();
  const events: ClipEvent[] = [];
  const clock = { now: 0 };
  const rec = new ClipRecorder({
    sealer,
    logger: new MemoryLogger(),
    config: { thumbnails: thumbs, ...config },
    now: () => clock.now,
    onEvent: (e) => events.push(e),
    ...(thumbs ? { thumbnailer: async () => new Uint8Array([0xff, 0xd8, 0xff, 0xd9]) } : {}),
  });
  rec.onInit(INIT);
  const feed = (i: number): void => {
    clock.now = (i + 1) * 1000;
    const f = frags[i];
    if (!f) throw new Error(`no fragment ${i}`);
    rec.onFragment({ ...f, receivedAt: clock.now });
  };
  return { rec, sealer, events, clock, feed };
}

t.test('ring keeps whole GOPs covering the pre-roll', async (t) => {
  const ring = new GopRing(3, 1 << 30);
  for (const f of frags.slice(0, 8)) ring.push(f);
  t.equal(ring.length, 3, 'whole GOPs covering 3 s');
  t.same(
    ring.preRoll(2).map((f) => f.sequence),
    [7, 8],
  );
  t.same(ring.preRoll(0), []);
  t.same(ring.preRoll(99).length, 3);
  ring.push(frags[10]!); // a gap: continuity is broken
  t.equal(ring.length, 1);
  const small = new GopRing(30, frags[0]!.bytes.length * 2 + 1);
  for (const f of frags.slice(0, 6)) small.push(f);
  t.ok(small.bytes <= frags[0]!.bytes.length * 3, 'byte cap respected');
  ring.clear();
  t.equal(ring.durationS, 0);
});

t.test('the recorder keeps GOPs covering the pre-roll, and a clip gets all of it', async (t) => {
  for (const preRollS of [1, 2, 3]) {
    const { rec, sealer, events, feed } = rig({ preRollS, postRollS: 0 });
    for (let i = 0; i < 8; i++) feed(i);
    // the fixture's GOPs are 1 s: exactly preRollS of them, not one more
    t.equal(rec.ring.length, preRollS, `ring of ${preRollS} s`);
    t.ok(rec.ring.durationS >= preRollS, 'covers the pre-roll');
    rec.motionStarted('test');
    await rec.idle();
    const clip = sealer.of('clip')[0];
    t.equal(clip?.chunks.length, 1 + preRollS, 'init + the whole pre-roll');
    t.match(events[0], { type: 'clip-started', preRollS });
  }
});

t.test(
  'motion -> clip with pre-roll, streamed while recording, closed after post-roll; playable',
  async (t) => {
    const { rec, sealer, events, feed, clock } = rig({ preRollS: 2, postRollS: 2 });
    for (let i = 0; i < 4; i++) feed(i);
    rec.motionStarted('test');
    await rec.idle();
    const clip = sealer.of('clip')[0];
    if (!clip) throw new Error('no clip');
    t.equal(clip.chunks.length, 3, 'init + 2 pre-roll GOPs sealed at once');
    t.equal(clip.meta.codec, `video/mp4; codecs="${INIT.codec}"`);
    t.equal(clip.meta.startedAt, 2000, 'starts where the pre-roll starts');
    feed(4);
    feed(5);
    await rec.idle();
    t.equal(clip.chunks.length, 5, 'fragments stream as they arrive');
    t.equal(clip.state, 'open');
    clock.now = 6500;
    rec.motionEnded();
    feed(6); // 7000: 0.5 s after
    feed(7); // 8000: 1.5 s
    await rec.idle();
    t.equal(clip.state, 'open', 'still in post-roll');
    feed(8); // 9000: 2.5 s >= 2 s
    await rec.idle();
    t.equal(clip.state, 'closed');
    t.equal(clip.durationMs, 7000, '2 s pre-roll + 5 s');
    const p = await probe(MemorySealer.bytes(clip));
    t.equal(p.codec, 'h264');
    t.ok(Math.abs(p.duration - 7) < 0.25, `ffprobe duration ${p.duration}`);
    t.same(
      events.map((e) => e.type),
      ['clip-started', 'clip-first-chunk', 'clip-closed'],
    );
    feed(9);
    await rec.idle();
    t.equal(sealer.of('clip').length, 1, 'no motion, no new clip');
    t.equal(rec.stats.clips, 1);
  },
);

t.test('max length splits a long event into consecutive clips', async (t) => {
  const { rec, sealer, feed } = rig({ preRollS: 1, postRollS: 1, maxClipS: 3 });
  feed(0);
  feed(1);
  rec.motionStarted('long');
  for (let i = 2; i < 9; i++) feed(i);
  await rec.idle();
  const clips = sealer.of('clip');
  t.equal(clips.length, 3);
  t.same(
    clips.map((c) => c.state),
    ['closed', 'closed', 'open'],
  );
  t.same(
    clips.slice(0, 2).map((c) => c.durationMs),
    [3000, 3000],
  );
  await rec.stop();
  t.equal(clips[2]?.state, 'closed', 'stop closes the open clip');
  const second = await probe(MemorySealer.bytes(clips[1]!));
  t.ok(Math.abs(second.duration - 3) < 0.25, 'follow-on clip is self-contained');
});

t.test('encoder lost mid-clip: the clip is closed at its last whole fragment', async (t) => {
  const { rec, sealer, events, feed } = rig({ preRollS: 1, postRollS: 5 });
  feed(0);
  rec.motionStarted('x');
  feed(1);
  feed(2);
  rec.encoderLost('killed');
  await rec.idle();
  const clip = sealer.of('clip')[0]!;
  t.equal(clip.state, 'closed');
  t.equal(clip.durationMs, 3000);
  t.match(events.at(-1), { type: 'clip-closed', why: /encoder lost: killed/ });
  t.equal(rec.ring.length, 0, 'ring cleared');
  rec.motionStarted('again');
  await rec.idle();
  t.equal(sealer.of('clip').length, 1, 'no clip without a new init segment');
  rec.onInit(INIT);
  feed(3);
  await rec.idle();
  t.equal(
    sealer.of('clip').length,
    2,
    'the waiting clip opens with the first GOP of the new stream',
  );
  t.equal(sealer.of('clip')[1]?.chunks.length, 2, 'init + that GOP (no pre-roll to give)');
  const p = await probe(MemorySealer.bytes(clip));
  t.ok(Math.abs(p.duration - 3) < 0.25);
});

t.test('motion that ends before the encoder has a stream still gets its clip', async (t) => {
  const { rec, sealer, events, feed, clock } = rig({ preRollS: 1, postRollS: 2, maxClipS: 10 });
  rec.encoderLost('restarting'); // no stream yet, as at start
  clock.now = 500;
  rec.motionStarted('pir');
  clock.now = 900;
  rec.motionEnded(); // someone walked past while the encoder started
  await rec.idle();
  t.equal(sealer.of('clip').length, 0, 'nothing to record yet');
  rec.onInit(INIT);
  feed(0);
  feed(1);
  await rec.idle();
  t.equal(sealer.of('clip').length, 1, 'the first GOP of the stream opens the clip');
  t.equal(sealer.of('clip')[0]?.state, 'open', 'the post-roll counts from that GOP');
  feed(2);
  feed(3);
  await rec.idle();
  const clip = sealer.of('clip')[0]!;
  t.equal(clip.state, 'closed');
  t.match(events.at(-1), { type: 'clip-closed', why: 'post-roll elapsed' });
  t.equal(clip.durationMs, 3000, 'the first GOP and a post-roll after it');

  // a stream that comes more than a clip's length after the motion: no clip
  const late = rig({ preRollS: 1, postRollS: 2, maxClipS: 10 });
  late.rec.encoderLost('restarting');
  late.clock.now = 500;
  late.rec.motionStarted('pir');
  late.rec.motionEnded();
  late.rec.onInit(INIT);
  late.feed(11); // at 12 s: 11.5 s after the motion ended
  late.feed(11);
  await late.rec.idle();
  t.equal(late.sealer.of('clip').length, 0, 'too late to be that event');
});

t.test('a sealer failure aborts the item and recording goes on', async (t) => {
  const { rec, sealer, events, feed } = rig({ preRollS: 1, postRollS: 0 });
  feed(0);
  sealer.failWritesOf = 'clip';
  rec.motionStarted('x');
  feed(1);
  await rec.idle();
  await new Promise((r) => setTimeout(r, 10));
  t.equal(sealer.of('clip')[0]?.state, 'aborted');
  t.match(
    events.find((e) => e.type === 'clip-failed'),
    { reason: /injected/ },
  );
  t.notOk(rec.recording);
  sealer.failWritesOf = undefined;
  rec.motionEnded();
  rec.motionStarted('y');
  feed(2);
  rec.motionEnded();
  feed(3);
  await rec.idle();
  t.equal(sealer.of('clip')[1]?.state, 'closed', 'the next event records normally');
});

t.test('a thumbnail is sealed as its own item for each clip', async (t) => {
  const { rec, sealer, events, feed } = rig({ preRollS: 1, postRollS: 0 }, true);
  feed(0);
  rec.motionStarted('x');
  feed(1);
  await rec.idle();
  await new Promise((r) => setTimeout(r, 20));
  await rec.idle();
  const th = sealer.of('thumbnail');
  t.equal(th.length, 1);
  t.equal(th[0]?.meta.codec, 'image/jpeg');
  t.equal(
    th[0]?.meta.sameEpochAs,
    sealer.of('clip')[0]?.itemId,
    "sealed in its clip's epoch (one advance per event)",
  );
  t.equal(th[0]?.state, 'closed');
  t.match(
    events.find((e) => e.type === 'thumbnail'),
    { forClip: sealer.of('clip')[0]?.itemId },
  );
  t.equal(rec.stats.thumbnails, 1);
});

t.test('config validation', async (t) => {
  t.notOk(clipConfigSchema.safeParse({ preRollS: -1 }).success);
  t.match(clipConfigSchema.parse({}), { preRollS: 3, postRollS: 3, maxClipS: 60 });
});

t.test('objects seen during a clip: best per class, sealed in the end-record note', async (t) => {
  t.equal(objectsNote([]), '');
  const { rec, sealer, events, feed, clock } = rig({ preRollS: 1, postRollS: 0 });
  rec.noteObjects([{ class: 'dog', score: 0.9 }]); // no clip open: nothing to note
  for (let i = 0; i < 3; i++) feed(i);
  rec.motionStarted('object (person:0.55)', [{ class: 'person', score: 0.55 }]);
  feed(3);
  rec.noteObjects([
    { class: 'car', score: 0.6 },
    { class: 'person', score: 0.5 },
  ]);
  rec.motionStarted('again', [{ class: 'person', score: 0.7 }]); // same clip, better score
  clock.now = 4500;
  rec.motionEnded();
  feed(4);
  await rec.idle();
  const clip = sealer.of('clip')[0];
  t.equal(clip?.state, 'closed');
  t.equal(clip?.note, 'objects=person:0.70,car:0.60');
  t.match(events[0], { type: 'clip-started', objects: [{ class: 'person', score: 0.55 }] });
  t.match(events.at(-1), {
    type: 'clip-closed',
    objects: [
      { class: 'person', score: 0.7 },
      { class: 'car', score: 0.6 },
    ],
  });
  // a clip without objects closes without a note
  const plain = rig({ preRollS: 0, postRollS: 0 });
  plain.feed(0);
  plain.rec.motionStarted('motion (video)');
  plain.clock.now = 1500;
  plain.rec.motionEnded();
  plain.feed(1);
  await plain.rec.idle();
  t.equal(plain.sealer.of('clip')[0]?.state, 'closed');
  t.equal(plain.sealer.of('clip')[0]?.note, undefined);
});
