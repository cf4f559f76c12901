import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import { createMediaPipeline, mediaConfigSchema } from '../../../firmware/media/pipeline.js';
import type { MediaEvent, MediaPipeline, MediaStatus } from '../../../firmware/media/pipeline.js';
import type { EdgeInput } from '../../../firmware/media/motion.js';
import { SimulatedCamera } from '../../../hw/camera/simulated-camera.js';
import type { MotionSchedule } from '../../../hw/camera/simulated-camera.js';
import { ValidationError } from '../../../base/errors.js';
import { MemorySealer } from './memory-sealer.js';
import { probe } from './fixtures.js';

const small = {
  encoder: {
    width: 160,
    height: 120,
    fps: 10,
    bitrateKbps: 150,
    softwarePreset: 'ultrafast' as const,
  },
  motion: { quietMs: 800 },
  clips: { preRollS: 1, postRollS: 1 },
  restart: { minMs: 100, maxMs: 1000 },
  cameraWatchMs: 100,
};

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
      reject(new Error(`timed out waiting for an event`));
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

/** Until the pipeline's status says so (e.g. video encoded into the pre-roll ring). */
async function untilStatus(
  p: MediaPipeline,
  pred: (s: MediaStatus) => boolean,
  what: string,
): Promise<void> {
  const end = Date.now() + PATIENCE_MS;
  while (!pred(p.status())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function rig(
  schedule: MotionSchedule,
  extra: Partial<Parameters<typeof createMediaPipeline>[0]> = {},
) {
  const camera = new SimulatedCamera({ width: 160, height: 120, fps: 10, schedule });
  const sealer = new MemorySealer();
  const logger = new MemoryLogger();
  const p = createMediaPipeline({ camera, sealer, logger, config: small, ...extra });
  const events: MediaEvent[] = [];
  p.on((e) => events.push(e));
  return { camera, sealer, logger, p, events };
}

t.test('bad config is refused with the path of the problem', async (t) => {
  t.throws(
    () =>
      createMediaPipeline({
        camera: new SimulatedCamera(),
        sealer: new MemorySealer(),
        logger: new MemoryLogger(),
        config: { clips: { preRollS: -1 } },
      }),
    ValidationError,
  );
  t.throws(
    () =>
      createMediaPipeline({
        camera: new SimulatedCamera(),
        sealer: new MemorySealer(),
        logger: new MemoryLogger(),
        config: { encoder: { width: 321 } },
      }),
    /encoder: width and height must be even/,
  );
  t.equal(mediaConfigSchema.parse({}).motion.source, 'video');
});

t.test('no usable encoder: start fails clearly and status says why', async (t) => {
  const { p } = rig({ intervals: [] }, { ffmpegEncoders: async () => new Set<string>() });
  await t.rejects(p.start(), { code: 'EENCODER_UNAVAILABLE' });
  t.equal(p.status().state, 'failed');
  t.match(p.status().error, /lacks libx264/);
});

t.test(
  'simulated motion -> clip with pre-roll + thumbnail; software path warned in status and logs',
  async (t) => {
    const { p, sealer, logger, events } = rig({ intervals: [[2.5, 4.5]] });
    await p.start();
    t.teardown(() => p.stop());
    const st = p.status();
    t.equal(st.encoder.path, 'software');
    t.match(st.encoder.warning, /SOFTWARE H\.264 ENCODING/);
    t.ok(st.encoder.pid);
    t.ok(
      logger.lines.some((l) => l.includes('"level":"warn"') && l.includes('SOFTWARE H.264')),
      'warned in the log',
    );
    await waitFor(p, (e) => e.type === 'clip-closed');
    await p.idle();
    const clip = sealer.of('clip')[0]!;
    t.equal(clip.state, 'closed');
    const pr = await probe(MemorySealer.bytes(clip));
    t.equal(pr.codec, 'h264');
    t.ok(
      Math.abs(pr.duration * 1000 - clip.durationMs!) < 150,
      `sealed duration ${clip.durationMs} matches ffprobe ${pr.duration}`,
    );
    const started = events.find((e) => e.type === 'clip-started');
    t.match(started, { preRollS: 1 });
    t.ok(events.some((e) => e.type === 'motion-start' && e.source === 'video'));
    // the thumbnail is made off the clip's chain: it may be sealed after the clip closed
    if (!events.some((e) => e.type === 'thumbnail'))
      await waitFor(p, (e) => e.type === 'thumbnail');
    await p.idle();
    t.equal(sealer.of('thumbnail').length, 1, 'one thumbnail for the clip');
    t.equal(p.status().counters.clips, 1);
    t.ok(p.status().counters.motionFrames > 5, 'side stream flowing');
    const live = await p.startLive({ maxS: 1 });
    t.equal(await live.ended, 'time limit');
    t.equal(sealer.of('live')[0]?.state, 'closed');
    await p.stop();
    t.equal(p.status().state, 'stopped');
    await t.rejects(p.startLive(), /no live view while stopped/);
  },
);

t.test('unplug parks the pipeline, replug restarts it', async (t) => {
  const { p, camera, events } = rig({ intervals: [] });
  await p.start();
  t.teardown(() => p.stop());
  const firstPid = p.status().encoder.pid;
  await waitFor(p, (e) => e.type === 'state' && e.state === 'running', 100).catch(() => undefined);
  camera.unplug();
  await waitFor(p, (e) => e.type === 'camera-unplugged');
  t.equal(p.status().state, 'camera-missing');
  t.notOk(p.status().camera.present);
  camera.replug();
  await waitFor(p, (e) => e.type === 'encoder-started');
  t.equal(p.status().state, 'running');
  t.not(p.status().encoder.pid, firstPid, 'a new encoder process');
  t.equal(p.status().encoder.restarts, 1);
  t.ok(events.some((e) => e.type === 'camera-replugged'));
});

t.test(
  'an encoder that keeps failing is restarted with backoff (M2M path chosen, no device here)',
  async (t) => {
    const { p } = rig(
      { intervals: [] },
      {
        probeM2m: async () => [
          {
            path: '/dev/video11',
            driver: 'bcm2835-codec',
            card: 'enc',
            outputFormats: ['YU12'],
            captureFormats: ['H264'],
            multiplanar: true,
          },
        ],
      },
    );
    await p.start();
    t.teardown(() => p.stop());
    t.equal(p.status().encoder.path, 'v4l2-m2m');
    t.equal(p.status().encoder.device, '/dev/video11');
    t.equal(p.status().encoder.warning, undefined, 'no software warning on the hardware path');
    await waitFor(p, (e) => e.type === 'encoder-exited');
    await waitFor(p, (e) => e.type === 'encoder-exited');
    t.ok(p.status().encoder.restarts >= 1);
    t.match(p.status().encoder.lastExit, /exit code/);
  },
);

t.test('PIR edges drive clips (motion.source pir)', async (t) => {
  let cb: ((v: 0 | 1, at: number) => void) | undefined;
  const pir: EdgeInput = {
    onEdge: (f) => {
      cb = f;
      return () => (cb = undefined);
    },
  };
  const { p, sealer } = rig(
    { intervals: [] },
    { pir, config: { ...small, motion: { source: 'pir' } } },
  );
  await p.start();
  t.teardown(() => p.stop());
  t.ok(cb, 'subscribed');
  await untilStatus(p, (s) => s.counters.fragments >= 2, 'video in the pre-roll ring');
  cb?.(1, Date.now());
  await waitFor(p, (e) => e.type === 'clip-started');
  t.equal(p.status().motion.active, true);
  const f = p.status().counters.fragments;
  await untilStatus(p, (s) => s.counters.fragments > f, 'a fragment during the motion');
  cb?.(0, Date.now());
  await waitFor(p, (e) => e.type === 'clip-closed');
  t.equal(sealer.of('clip').length, 1);
  t.equal(p.status().counters.motionFrames, 0, 'no video side stream in PIR-only mode');
  await p.stop();
  t.equal(cb, undefined, 'unsubscribed on stop');
});

t.test('PIR source without a PIR input is refused', async (t) => {
  const { p } = rig({ intervals: [] }, { config: { ...small, motion: { source: 'both' } } });
  await t.rejects(p.start(), /no PIR input/);
});

t.test('manual trigger records like motion', async (t) => {
  const { p, sealer } = rig({ intervals: [] });
  await p.start();
  t.teardown(() => p.stop());
  await untilStatus(p, (s) => s.counters.fragments >= 2, 'video in the pre-roll ring');
  p.trigger(1000);
  await waitFor(p, (e) => e.type === 'clip-closed');
  t.match(sealer.of('clip')[0], { state: 'closed' });
  await t.rejects(p.start(), /already running/);
});

t.test(
  'a camera offering H.264 takes the camera-native path and gets bitrate/GOP as controls',
  async (t) => {
    const { FakeV4l2Binding, bcm2835V4l2Like } =
      await import('../../../hw/camera/fake-v4l2-binding.js');
    const { V4l2Camera } = await import('../../../hw/camera/v4l2-camera.js');
    const b = new FakeV4l2Binding().add('/dev/video0', bcm2835V4l2Like());
    const camera = new V4l2Camera({ binding: b, path: '/dev/video0' });
    const p = createMediaPipeline({
      camera,
      sealer: new MemorySealer(),
      logger: new MemoryLogger(),
      config: { ...small, encoder: { ...small.encoder, bitrateKbps: 4000, fps: 30 } },
      probeM2m: async () => [],
    });
    await p.start();
    t.teardown(() => p.stop());
    const st = p.status();
    t.equal(st.encoder.path, 'camera-h264');
    t.equal(st.encoder.warning, undefined);
    t.match(st.camera.format, { pixelFormat: 'H264' });
    const ctrls = b.devices.get('/dev/video0')?.controlValues;
    t.equal(ctrls?.get(0x009909cf), 4_000_000, 'bitrate control');
    t.equal(ctrls?.get(0x00990a66), 15, 'I-frame period = 0.5 s of frames (the default)');
    await p.stop();
  },
);
