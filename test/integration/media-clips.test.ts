/**
 * The media pipeline end to end with the REAL sealer: simulated camera ->
 * ffmpeg/libx264 fMP4 -> motion -> clip with pre-roll -> MlsItemSealer
 * (epoch per item, chunked ChaCha20-Poly1305 container) -> sink; then a
 * paired companion (app/e2ee) decrypts and ffprobe checks the video.
 *
 *  - a motion event yields a clip whose decrypted fMP4 passes ffprobe with the
 *    expected duration including pre-roll;
 *  - no motion, no clip;
 *  - the encoder process killed mid-clip: the clip is closed cleanly and
 *    recording resumes.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { CiphertextSink } from '../../firmware/items.js';
import type { ItemKind } from '../../protocol/items.js';
import { MemoryLogger } from '../../base/logger.js';
import { createMediaPipeline } from '../../firmware/media/pipeline.js';
import type {
  MediaConfigInput,
  MediaEvent,
  MediaPipeline,
  MediaStatus,
} from '../../firmware/media/pipeline.js';
import { SimulatedCamera } from '../../hw/camera/simulated-camera.js';
import type { MotionSchedule } from '../../hw/camera/simulated-camera.js';
import { loadMlsProfile } from '../../protocol/mls-profile.js';
import type { E2eePhone } from '../../app/e2ee/phone.js';
import { probe } from '../firmware/media/fixtures.js';
import {
  MemorySink,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
  tempDir,
} from '../../dev/fixtures/paired-hub.js';

const PRE_ROLL_S = 2;
const POST_ROLL_S = 1;
const QUIET_MS = 800;
const config: MediaConfigInput = {
  encoder: {
    width: 160,
    height: 120,
    fps: 10,
    bitrateKbps: 150,
    softwarePreset: 'ultrafast',
    gopSeconds: 1,
  },
  motion: { quietMs: QUIET_MS },
  clips: { preRollS: PRE_ROLL_S, postRollS: POST_ROLL_S },
  restart: { minMs: 200, maxMs: 2000 },
};

/** Records when each item's bytes reached the sink (to prove streaming while recording). */
class TimedSink implements CiphertextSink {
  readonly inner = new MemorySink();
  readonly firstAt = new Map<string, number>();
  readonly finalAt = new Map<string, number>();
  append(itemId: string, kind: ItemKind, bytes: Uint8Array, final: boolean): Promise<void> {
    if (!this.firstAt.has(itemId)) this.firstAt.set(itemId, Date.now());
    if (final) this.finalAt.set(itemId, Date.now());
    return this.inner.append(itemId, kind, bytes, final);
  }
  ids(kind: ItemKind): string[] {
    return this.inner.order.filter((id) => this.inner.items.get(id)?.kind === kind);
  }
}

// Deadlines for a loaded machine (CI: load about 12 on two cores): they end a stuck test.
const PATIENCE_MS = 240_000;

function waitFor(
  p: MediaPipeline,
  pred: (e: MediaEvent) => boolean,
  ms = PATIENCE_MS,
): Promise<MediaEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('timed out waiting for a media event'));
    }, ms);
    const off = p.on((e) => {
      if (pred(e)) {
        clearTimeout(timer);
        off();
        resolve(e);
      }
    });
  });
}

/** Until the pipeline's status says so (encoded fragments, watched frames...). */
async function untilStatus(
  p: MediaPipeline,
  pred: (s: MediaStatus) => boolean,
  what: string,
): Promise<MediaStatus> {
  const end = Date.now() + PATIENCE_MS;
  for (;;) {
    const s = p.status();
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const root = tempDir('vigil-media-it-');
t.teardown(() => {
  rmSync(root, { recursive: true, force: true });
});
const profile = await loadMlsProfile();
const hub = await openHub(profile, join(root, 'hub'));
const paired = await pair({
  p: profile,
  hub,
  devicePsk: newDevicePsk(),
  phoneDir: join(root, 'phone'),
});
if (!paired.phone) throw new Error('pairing failed');
const phone: E2eePhone = paired.phone;

function rig(schedule: MotionSchedule): {
  p: MediaPipeline;
  sink: TimedSink;
  events: MediaEvent[];
} {
  const sink = new TimedSink();
  const camera = new SimulatedCamera({ width: 160, height: 120, fps: 10, schedule });
  const p = createMediaPipeline({
    camera,
    sealer: sealerFor(hub, sink),
    logger: new MemoryLogger(),
    config,
  });
  const events: MediaEvent[] = [];
  p.on((e) => events.push(e));
  return { p, sink, events };
}

/** The companion decrypts every item of a kind, in order (epochs advance per item). */
async function decryptAll(sink: TimedSink, kind: ItemKind): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const id of sink.ids(kind)) {
    const opened = await phone.decryptItem(sink.inner.bytes(id));
    out.set(id, opened.plaintext);
  }
  return out;
}

t.test(
  'motion -> sealed clip with pre-roll; the companion decrypts it and ffprobe agrees',
  async (t) => {
    const { p, sink, events } = rig({ intervals: [[4, 6]] });
    const thumbnail = waitFor(p, (e) => e.type === 'thumbnail');
    thumbnail.catch(() => undefined); // awaited below
    await p.start();
    t.teardown(() => p.stop());
    const closed = await waitFor(p, (e) => e.type === 'clip-closed');
    await thumbnail; // sealed beside the clip, off its chain
    await p.stop();
    if (closed.type !== 'clip-closed') throw new Error('unexpected event');
    const clips = sink.ids('clip');
    t.equal(clips.length, 1, 'one event, one clip');
    const id = clips[0]!;
    t.ok(
      (sink.firstAt.get(id) ?? Infinity) < (sink.finalAt.get(id) ?? 0) - 1000,
      'sealed chunks reached the sink while the clip was still recording',
    );
    const plain = (await decryptAll(sink, 'clip')).get(id)!;
    const pr = await probe(plain);
    t.equal(pr.codec, 'h264');
    const start = events.find((e) => e.type === 'motion-start');
    const end = events.find((e) => e.type === 'motion-end');
    const started = events.find((e) => e.type === 'clip-started');
    if (!start || !end || started?.type !== 'clip-started') throw new Error('missing events');
    t.ok(started.preRollS >= PRE_ROLL_S, `pre-roll of whole GOPs: ${started.preRollS} s`);
    // The clip covers: pre-roll + the motion event (incl. the quiet time that ends it) +
    // post-roll, give or take the GOP that was being encoded at either end.
    const expected = started.preRollS + (end.at - start.at) / 1000 + POST_ROLL_S;
    t.ok(
      pr.duration >= expected - 1.05 && pr.duration <= expected + 2.05,
      `ffprobe duration ${pr.duration} s ~ expected ${expected.toFixed(2)} s (pre-roll included)`,
    );
    t.ok(
      Math.abs(pr.duration * 1000 - closed.durationMs) < 150,
      'duration in the sealed trailer matches the video',
    );
    t.ok(pr.frames >= Math.floor(pr.duration * 10) - 1, `${pr.frames} frames decode`);
    // the thumbnail is its own sealed item (thumbnail group), also decryptable
    const thumbs = await decryptAll(sink, 'thumbnail');
    t.equal(thumbs.size, 1);
    const jpeg = [...thumbs.values()][0]!;
    t.same([jpeg[0], jpeg[1]], [0xff, 0xd8], 'decrypted thumbnail is a JPEG');
  },
);

t.test('no motion, no clip', async (t) => {
  const { p, sink } = rig({ intervals: [] });
  await p.start();
  t.teardown(() => p.stop());
  // watch a stretch of video (five 1 s GOPs) however slowly the machine encodes it
  const st = await untilStatus(
    p,
    (s) => s.counters.fragments >= 5 && s.counters.motionFrames >= 10,
    'five fragments encoded and watched',
  );
  await p.stop();
  t.ok(st.counters.fragments >= 3, `video was encoded (${st.counters.fragments} fragments)`);
  t.ok(st.counters.motionFrames >= 10, 'and watched for motion');
  t.equal(st.motion.lastStartAt, undefined, 'noise never triggered');
  t.equal(sink.inner.order.length, 0, 'nothing sealed');
});

t.test('encoder killed mid-clip: the clip closes cleanly and recording resumes', async (t) => {
  const { p, sink, events } = rig({ intervals: [[3, 60]] });
  await p.start();
  t.teardown(() => p.stop());
  await waitFor(p, (e) => e.type === 'clip-started');
  await waitFor(p, (e) => e.type === 'clip-first-chunk');
  // two more fragments (2 s of video) in the clip before the kill
  const f0 = p.status().counters.fragments;
  await untilStatus(p, (s) => s.counters.fragments >= f0 + 2, 'two more fragments');
  const pid = p.status().encoder.pid;
  if (pid === undefined) throw new Error('no encoder pid');
  process.kill(pid, 'SIGKILL');
  const closed = await waitFor(p, (e) => e.type === 'clip-closed');
  t.match(closed, { why: /encoder lost/ });
  await waitFor(p, (e) => e.type === 'encoder-started');
  t.not(p.status().encoder.pid, pid, 'a new encoder process');
  await waitFor(p, (e) => e.type === 'clip-started');
  const f1 = p.status().counters.fragments;
  await untilStatus(p, (s) => s.counters.fragments >= f1 + 2, 'two fragments after the restart');
  await p.stop();
  t.match(p.status().encoder.lastExit, /signal SIGKILL/);
  const clips = sink.ids('clip');
  t.equal(clips.length, 2, 'the interrupted clip and the one after the restart');
  const plain = await decryptAll(sink, 'clip');
  for (const [i, id] of clips.entries()) {
    const pr = await probe(plain.get(id)!);
    t.equal(pr.codec, 'h264', `clip ${i + 1} decrypts to H.264`);
    t.ok(pr.duration >= 1, `clip ${i + 1} plays (${pr.duration} s)`);
  }
  const first = await probe(plain.get(clips[0]!)!);
  if (closed.type !== 'clip-closed') throw new Error('unexpected event');
  t.ok(Math.abs(first.duration * 1000 - closed.durationMs) < 150, 'cut at the last whole fragment');
  t.ok(events.some((e) => e.type === 'encoder-exited' && e.signal === 'SIGKILL'));
});
