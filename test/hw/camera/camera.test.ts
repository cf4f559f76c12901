import t from 'tap';
import {
  CameraError,
  FormatMismatchError,
  describeFormat,
  formatDiffers,
  isH264,
  watchPresence,
} from '../../../hw/camera/camera.js';

const f = { width: 640, height: 480, pixelFormat: 'YUYV', fps: 30 };

t.test('format helpers', async (t) => {
  t.equal(describeFormat({ ...f, fps: 29.97 }), 'YUYV 640x480@29.97');
  t.notOk(formatDiffers(f, { ...f, pixelFormat: 'yuyv', fps: 15 }), 'fps and case do not matter');
  t.ok(formatDiffers({ ...f, pixelFormat: 'H264' }, f), 'pixel format fallback is a difference');
  t.ok(formatDiffers(f, { ...f, width: 320 }));
  t.ok(isH264('h264'));
  t.notOk(isH264('MJPG'));
  const e = new FormatMismatchError({ ...f, pixelFormat: 'H264' }, f);
  t.ok(e instanceof CameraError);
  t.equal(e.code, 'ECAMERA_FORMAT');
  t.match(e.message, /negotiated YUYV 640x480@30 instead of H264 640x480@30/);
});

// watchPresence's timer is unref'd (it must not keep the hub alive): keep the test alive.
const keepAlive = setInterval(() => undefined, 1000);
t.teardown(() => {
  clearInterval(keepAlive);
});

t.test('watchPresence reports each transition once', async (t) => {
  const seq = [true, true, false, false, true, true];
  let i = 0;
  const events: string[] = [];
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stop = watchPresence(
    async () => {
      const v = seq[Math.min(i, seq.length - 1)] ?? true;
      i++;
      if (i >= seq.length + 1) resolveDone();
      return v;
    },
    (e) => events.push(e),
    5,
  );
  await done;
  stop();
  t.same(events, ['unplugged', 'replugged']);
});

t.test('a throwing probe counts as absent; stop ends polling', async (t) => {
  let calls = 0;
  const events: string[] = [];
  const stop = watchPresence(
    async () => {
      calls++;
      if (calls === 2) throw new Error('ENODEV');
      return true;
    },
    (e) => events.push(e),
    5,
  );
  // wait for what the watcher reports (polls are late on a loaded machine), not for a time
  while (events.length < 2) await new Promise((r) => setTimeout(r, 5));
  stop();
  const after = calls;
  await new Promise((r) => setTimeout(r, 30));
  t.equal(calls, after, 'no probes after stop');
  t.same(events.slice(0, 2), ['unplugged', 'replugged']);
});
