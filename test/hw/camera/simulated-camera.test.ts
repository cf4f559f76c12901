import t from 'tap';
import { CameraError, FormatMismatchError } from '../../../hw/camera/camera.js';
import { SimulatedCamera } from '../../../hw/camera/simulated-camera.js';
import {
  decodeFrameClock,
  frameClockLayout,
  frameClockSamplePoints,
  unwrapFrameClock,
} from '../../../hw/camera/frame-clock.js';
import { ValidationError } from '../../../base/errors.js';

t.test('schedule validation', async (t) => {
  t.throws(() => new SimulatedCamera({ schedule: { intervals: [[5, 2]] } }), ValidationError);
  t.throws(
    () => new SimulatedCamera({ schedule: { intervals: [[1, 20]], periodS: 10 } }),
    /fit inside periodS/,
  );
});

t.test('motionAt follows the script, periodic or not', async (t) => {
  let now = 1_000_000;
  const cam = new SimulatedCamera({ schedule: { intervals: [[2, 4]] }, now: () => now });
  t.notOk(cam.motionAt(1));
  t.ok(cam.motionAt(2.5));
  t.notOk(cam.motionAt(4));
  now += 3000;
  t.ok(cam.motionAt(), 'now = 3 s into the script');
  const p = new SimulatedCamera({ schedule: { intervals: [[1, 2]], periodS: 10 } });
  t.ok(p.motionAt(11.5));
  t.notOk(p.motionAt(15));
});

t.test('lavfi graph starts where the script is (encoder restarts keep the schedule)', async (t) => {
  const cam = new SimulatedCamera({ schedule: { intervals: [[2, 4]] } });
  const g = cam.lavfiGraph({ width: 320, height: 240, pixelFormat: 'YU12', fps: 10 }, 12.5);
  t.match(g, /\(t\+12\.500\)/);
  t.match(g, /between\(\(t\+12\.500\),2,3\.999\)/);
  t.match(g, /noise=alls=6/);
  const still = new SimulatedCamera().lavfiGraph(
    { width: 320, height: 240, pixelFormat: 'YU12', fps: 10 },
    0,
  );
  t.match(still, /enable='0'/, 'no intervals: the object never shows');
});

t.test('formats and driver-like negotiation', async (t) => {
  const cam = new SimulatedCamera();
  const fmts = await cam.formats();
  t.equal(fmts[0]?.fourcc, 'YU12');
  t.ok(fmts[0]?.sizes.some((s) => s.width === 1920 && s.height === 1080));
  const got = await cam.setFormat({ width: 1280, height: 720, pixelFormat: 'H264', fps: 30 });
  t.same(
    got,
    { width: 1280, height: 720, pixelFormat: 'YU12', fps: 30 },
    'H264 falls back to YU12',
  );
  await t.rejects(
    cam.setFormat({ width: 1280, height: 720, pixelFormat: 'H264', fps: 30 }, { strict: true }),
    FormatMismatchError,
  );
  t.same(await cam.setFormat({ width: 330, height: 250, pixelFormat: 'YU12', fps: 12 }), {
    width: 320,
    height: 240,
    pixelFormat: 'YU12',
    fps: 10,
  });
  t.same(await cam.currentFormat(), { width: 320, height: 240, pixelFormat: 'YU12', fps: 10 });
  t.match((await cam.capabilities()).driver, 'vigil-sim');
  t.same(cam.ffmpegInput(got).slice(0, 3), ['-re', '-f', 'lavfi']);
});

t.test('a frame and a still from the simulator (real ffmpeg)', async (t) => {
  const cam = new SimulatedCamera({ width: 160, height: 120 });
  await cam.setFormat({ width: 160, height: 120, pixelFormat: 'YU12', fps: 5 });
  const f = await cam.captureFrame();
  t.equal(f.data.length, (160 * 120 * 3) / 2);
  const jpeg = await cam.still({ maxWidth: 80 });
  t.same([jpeg[0], jpeg[1]], [0xff, 0xd8]);
});

t.test('frame clock: each frame carries its generation time (real ffmpeg)', async (t) => {
  const cam = new SimulatedCamera({ width: 320, height: 240, frameClock: true });
  const fmt = await cam.setFormat({ width: 320, height: 240, pixelFormat: 'YU12', fps: 10 });
  t.notMatch(new SimulatedCamera().lavfiGraph(fmt, 0), /time\(0\)/, 'off by default');
  const before = Date.now();
  const f = await cam.captureFrame();
  const after = Date.now();
  const l = frameClockLayout(320);
  // luma plane first (YU12): sample each cell centre
  const samples = frameClockSamplePoints(l).map((p) => f.data[p.y * 320 + p.x] ?? 0);
  const at = unwrapFrameClock(decodeFrameClock(samples), after);
  t.ok(at >= before && at <= after, `decoded ${at} within [${before}, ${after}]`);
});

t.test('unplug and replug', async (t) => {
  const cam = new SimulatedCamera();
  cam.unplug();
  t.notOk(await cam.present());
  await t.rejects(cam.formats(), CameraError);
  t.throws(
    () => cam.ffmpegInput({ width: 320, height: 240, pixelFormat: 'YU12', fps: 10 }),
    /gone/,
  );
  cam.replug();
  t.ok(await cam.present());
  const keep = setInterval(() => undefined, 1000);
  const events: string[] = [];
  const stop = cam.watch((e) => events.push(e), 10);
  await new Promise((r) => setTimeout(r, 30));
  cam.unplug();
  // wait for what the watcher reports (polls are late on a loaded machine), not for a time
  while (events.length < 1) await new Promise((r) => setTimeout(r, 5));
  cam.replug();
  while (events.length < 2) await new Promise((r) => setTimeout(r, 5));
  stop();
  clearInterval(keep);
  t.same(events, ['unplugged', 'replugged']);
});
