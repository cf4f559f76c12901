/**
 * Events by class, end to end (issue #21): the simulated camera films a real
 * photograph (dev/fixtures/images/README.md: public domain / CC0, shipped by
 * Debian's python3-skimage) while a white square crosses it; the real
 * pipeline (ffmpeg, the small motion side stream, the motion detector) starts
 * the keyframe decoder when motion fires and hands its pictures to the real
 * NanoDet-g detector. At rest the encoder is the very one detection off runs. A person makes a clip whose sealed
 * end record names the person; the empty scene makes none unless configured;
 * an exclude zone over the person makes none. With a stalled detector the
 * hub still records (motionClips), the governor's motion-only level records
 * every motion without asking the detector, and a keyframe decoder that dies
 * makes the waiting event record.
 */
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { photoPath } from '../../dev/fixtures/images.js';
import type { Photo } from '../../dev/fixtures/images.js';
import type { DetectionConfigInput } from '../../firmware/media/detection.js';
import { noticeOf } from '../../firmware/media/motion-notices.js';
import { createMediaPipeline } from '../../firmware/media/pipeline.js';
import type { MediaEvent, MediaPipeline } from '../../firmware/media/pipeline.js';
import { SimulatedCamera } from '../../hw/camera/simulated-camera.js';
import type { Detection, GreyFrame, ObjectDetector } from '../../hw/detector/detector.js';
import { OnnxDetector } from '../../hw/detector/onnx-detector.js';
import { MemorySealer } from '../firmware/media/memory-sealer.js';

const detector = new OnnxDetector();
t.teardown(() => detector.close());

function rig(
  photo: Photo,
  detection: DetectionConfigInput,
  d: ObjectDetector = detector,
  ffmpeg?: string,
) {
  // Motion (the square crossing) from 1.5 s to 7 s after the camera starts: long enough for the
  // keyframe decoder's first picture on a loaded machine; the detector's answer about it (cold
  // onnxruntime and model) may come after the motion ended and still decides the event.
  const camera = new SimulatedCamera({
    width: 320,
    height: 240,
    fps: 10,
    schedule: { intervals: [[1.5, 7]] },
    background: photoPath(photo),
  });
  const sealer = new MemorySealer();
  const p = createMediaPipeline({
    camera,
    sealer,
    logger: new MemoryLogger(),
    detector: d,
    ...(ffmpeg !== undefined ? { ffmpeg } : {}),
    config: {
      encoder: { width: 320, height: 240, fps: 10, bitrateKbps: 300, softwarePreset: 'ultrafast' },
      motion: { quietMs: 800 },
      clips: { preRollS: 1, postRollS: 1, thumbnails: false },
      detection: { enabled: true, width: 320, height: 224, ...detection },
    },
  });
  const events: MediaEvent[] = [];
  p.on((e) => events.push(e));
  return { p, sealer, events };
}

/** The first event that matches (no deadline: tap's own timeout ends a stuck test). */
function next(p: MediaPipeline, pred: (e: MediaEvent) => boolean): Promise<MediaEvent> {
  return new Promise((resolve) => {
    const off = p.on((e) => {
      if (pred(e)) {
        off();
        resolve(e);
      }
    });
  });
}

t.test('a person makes a clip; its end record and notice name the person', async (t) => {
  const { p, sealer, events } = rig('astronaut', {});
  let framesAtRest: number | undefined;
  p.on((e) => {
    if (e.type === 'motion-start') framesAtRest ??= p.status().detection.frames;
  });
  await p.start();
  t.teardown(() => p.stop());
  const closed = await next(p, (e) => e.type === 'clip-closed');
  t.equal(framesAtRest, 0, 'no picture decoded for the detector before motion');
  await p.idle();
  const started = events.find((e) => e.type === 'clip-started');
  if (started?.type !== 'clip-started') throw new Error('no clip-started event');
  t.match(started.reason, /^object \(person:0\.\d\d\)$/);
  t.equal(started.objects?.[0]?.class, 'person');
  t.ok((started.objects?.[0]?.score ?? 0) >= 0.4);
  t.ok(
    events.findIndex((e) => e.type === 'motion-start') <
      events.findIndex((e) => e.type === 'objects'),
    'motion first, then the object',
  );
  const clip = sealer.of('clip')[0];
  t.equal(clip?.state, 'closed');
  t.match(clip?.note, /^objects=person:0\.\d\d/, 'the sealed end record carries the objects');
  t.match(closed, { type: 'clip-closed', objects: [{ class: 'person' }] });
  const notice = noticeOf(started);
  t.match(notice, { kind: 'motion', text: /^person detected \(0\.\d\d\)$/ });
  t.equal(notice?.objects?.[0]?.class, 'person');
  const st = p.status().detection;
  t.ok(st.inferences >= 1, `${st.inferences} inferences`);
  t.ok(st.frames >= st.inferences, `${st.frames} keyframes decoded for them`);
  t.equal(st.level, 'full');
});

t.test('the empty scene: motion, no clip; with motionClips: a clip', async (t) => {
  const a = rig('rocket', {});
  await a.p.start();
  t.teardown(() => a.p.stop());
  await next(a.p, (e) => e.type === 'motion-ignored');
  await a.p.idle();
  t.equal(a.sealer.of('clip').length, 0, 'no clip for motion without a person');
  t.notOk(a.events.some((e) => e.type === 'objects'));
  t.ok(a.p.status().detection.inferences >= 1, 'the detector looked');
  t.ok(a.p.status().detection.frames >= 1, 'at decoded keyframes');
  await a.p.stop();

  const b = rig('rocket', { motionClips: true });
  await b.p.start();
  t.teardown(() => b.p.stop());
  await next(b.p, (e) => e.type === 'clip-closed');
  await b.p.idle();
  const clip = b.sealer.of('clip')[0];
  t.equal(clip?.state, 'closed', 'configured: motion alone makes a clip');
  t.equal(clip?.note, undefined, 'and it names no object');
});

t.test('an exclude zone over the person: no clip', async (t) => {
  const { p, sealer, events } = rig('astronaut', {
    // She stands in the left two thirds of the picture.
    zones: [
      {
        mode: 'exclude',
        points: [
          [0, 0],
          [0.7, 0],
          [0.7, 1],
          [0, 1],
        ],
      },
    ],
  });
  await p.start();
  t.teardown(() => p.stop());
  await next(p, (e) => e.type === 'motion-ignored');
  await p.idle();
  t.equal(sealer.of('clip').length, 0);
  t.notOk(events.some((e) => e.type === 'objects'));
});

/** The real detector, whose answers are held until `release` (a slow, loaded hub). */
class LateDetector implements ObjectDetector {
  calls = 0;
  readonly #release: Promise<void>;
  constructor(release: Promise<void>) {
    this.#release = release;
  }
  async detect(f: GreyFrame, minScore: number): Promise<Detection[]> {
    this.calls++;
    const found = await detector.detect(f, minScore);
    await this.#release;
    return found;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

t.test('an answer that comes after the motion ended still makes the clip', async (t) => {
  let ended!: () => void;
  const motionEnded = new Promise<void>((r) => (ended = r));
  const late = new LateDetector(motionEnded);
  const { p, sealer, events } = rig('astronaut', {}, late);
  p.on((e) => {
    if (e.type === 'motion-end') ended();
  });
  await p.start();
  t.teardown(() => p.stop());
  const decided = await next(p, (e) => e.type === 'clip-started' || e.type === 'motion-ignored');
  t.equal(decided.type, 'clip-started', 'the event was not ignored');
  t.match(decided, { reason: /^object \(person:0\.\d\d\)$/ });
  if (decided.type !== 'clip-started') return;
  await next(p, (e) => e.type === 'clip-closed');
  await p.idle();
  const at = (type: MediaEvent['type']) => events.findIndex((e) => e.type === type);
  t.ok(at('motion-end') >= 0 && at('motion-end') < at('objects'), 'the answer came after the end');
  t.equal(sealer.of('clip').length, 1);
  t.match(sealer.of('clip')[0], { state: 'closed', note: /^objects=person:0\.\d\d/ });
  t.equal(late.calls, 1, 'one picture was in flight when the motion ended');
});

/** A detector that never answers (a wedged runtime). */
class StuckDetector implements ObjectDetector {
  calls = 0;
  detect(_f: GreyFrame): Promise<Detection[]> {
    this.calls++;
    return new Promise(() => undefined);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

t.test('a stuck detector never holds up recording', async (t) => {
  const stuck = new StuckDetector();
  const { p, sealer } = rig('astronaut', { motionClips: true }, stuck);
  await p.start();
  t.teardown(() => p.stop());
  await next(p, (e) => e.type === 'clip-closed');
  await p.idle();
  const clip = sealer.of('clip')[0];
  t.equal(clip?.state, 'closed');
  t.ok((clip?.chunks.length ?? 0) > 5, `${clip?.chunks.length} chunks written`);
  t.equal(stuck.calls, 1, 'one inference in flight, none queued behind it');
  t.ok(p.status().detection.dropped > 0, 'frames dropped while it was busy');
});

t.test('governor at motion-only: motion records without the detector', async (t) => {
  const stuck = new StuckDetector();
  const { p, sealer, events } = rig('rocket', {}, stuck);
  p.setAnalysisLevel('motion-only', 0);
  t.match(events.at(-1), { type: 'analysis-level', level: 'motion-only', fps: 0 });
  await p.start();
  t.teardown(() => p.stop());
  await next(p, (e) => e.type === 'clip-closed');
  await p.idle();
  t.equal(sealer.of('clip').length, 1);
  t.equal(stuck.calls, 0, 'the detector was not asked');
  t.equal(p.status().detection.level, 'motion-only');
});

t.test('governor drops to motion-only during an event: the waiting event records', async (t) => {
  const stuck = new StuckDetector();
  const { p, sealer } = rig('rocket', {}, stuck);
  await p.start();
  t.teardown(() => p.stop());
  await next(p, (e) => e.type === 'motion-start');
  t.equal(sealer.of('clip').length, 0, 'waiting for an object');
  p.setAnalysisLevel('reduced', 1);
  p.setAnalysisLevel('motion-only', 0);
  const started = await next(p, (e) => e.type === 'clip-started');
  t.match(started, { reason: /detector paused by the load governor/ });
  await next(p, (e) => e.type === 'clip-closed');
});

/** ffmpeg behind a script that notes each command line (one per line) in a log. */
async function loggingFfmpeg(t: Test): Promise<{ ffmpeg: string; lines: () => string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-ffmpeg-log-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const log = join(dir, 'calls.log');
  const ffmpeg = join(dir, 'ffmpeg');
  await writeFile(log, '');
  await writeFile(ffmpeg, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec ffmpeg "$@"\n`);
  await chmod(ffmpeg, 0o755);
  // Read synchronously so that an event listener sees the processes started before the event.
  return { ffmpeg, lines: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

/** The encoder's command line from its filter graph on, the socket's private path left out. */
function encoderOutputs(lines: readonly string[]): string {
  const enc = lines.find((l) => l.includes('-movflags')) ?? 'no encoder';
  return enc.slice(enc.indexOf('-filter_complex')).replace(/unix:\S+/, 'unix:SOCKET');
}

t.test(
  'at rest the hub runs the same encoder as with detection off; motion adds the decoder',
  async (t) => {
    const atRest: Record<'off' | 'on', string[]> = { off: [], on: [] };
    for (const mode of ['off', 'on'] as const) {
      const { ffmpeg, lines } = await loggingFfmpeg(t);
      const { p } = rig('astronaut', { enabled: mode === 'on' }, detector, ffmpeg);
      const off = p.on((e) => {
        if (e.type !== 'motion-start') return;
        off();
        atRest[mode] = lines();
      });
      await p.start();
      await next(p, (e) => e.type === 'clip-closed');
      const decoders = lines().filter((l) => l.includes('-f h264 -i pipe:0'));
      if (mode === 'on') {
        t.ok(decoders.length >= 1, 'detection on: a keyframe decoder for the event');
        t.match(decoders[0], /scale=320:224:flags=area/, 'at the detector size');
      } else t.equal(decoders.length, 0, 'detection off: no keyframe decoder');
      await p.stop();
    }
    t.same(
      atRest.on.map((l) => l.split(' ').slice(0, 3).join(' ')),
      atRest.off.map((l) => l.split(' ').slice(0, 3).join(' ')),
      'at rest: the same ffmpeg runs (encoder list, then the encoder)',
    );
    t.equal(
      encoderOutputs(atRest.on),
      encoderOutputs(atRest.off),
      'with the same outputs: the small motion side stream, nothing detector-sized',
    );
    t.match(encoderOutputs(atRest.on), /scale=64:48:flags=area,format=gray/, 'the motion size');
  },
);

t.test('a keyframe decoder that dies makes the waiting event record', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-ffmpeg-fail-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const ffmpeg = join(dir, 'ffmpeg');
  // The encoder runs; the detector's decoder (the only ffmpeg reading H.264 on stdin) fails.
  await writeFile(
    ffmpeg,
    '#!/bin/sh\ncase "$*" in *"-f h264 -i pipe:0"*) echo "no decoder here" >&2; exit 1;; esac\nexec ffmpeg "$@"\n',
  );
  await chmod(ffmpeg, 0o755);
  const { p, sealer, events } = rig('rocket', {}, detector, ffmpeg);
  await p.start();
  t.teardown(() => p.stop());
  const started = await next(p, (e) => e.type === 'clip-started');
  t.match(started, { reason: /no pictures for the detector/ });
  t.ok(
    events.some(
      (e) =>
        e.type === 'warning' && /frame decoder exited \(code 1\): no decoder here/.test(e.message),
    ),
    'the reason is reported',
  );
  await next(p, (e) => e.type === 'clip-closed');
  await p.idle();
  t.equal(sealer.of('clip')[0]?.state, 'closed', 'the event is recorded');
});
