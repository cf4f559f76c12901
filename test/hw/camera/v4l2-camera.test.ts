import t from 'tap';
import { CameraError, FormatMismatchError } from '../../../hw/camera/camera.js';
import {
  FakeV4l2Binding,
  bcm2835V4l2Like,
  vicodecEncoderLike,
  vividLike,
} from '../../../hw/camera/fake-v4l2-binding.js';
import {
  V4l2Camera,
  capabilitiesOf,
  discoverCameras,
  discoverDevices,
  ffmpegInputFormatOf,
} from '../../../hw/camera/v4l2-camera.js';

const setup = (): { b: FakeV4l2Binding; cam: V4l2Camera } => {
  const b = new FakeV4l2Binding()
    .add('/dev/video0', vividLike())
    .add('/dev/video1', vicodecEncoderLike());
  return { b, cam: new V4l2Camera({ binding: b, path: '/dev/video0' }) };
};

t.test('capabilities use device_caps when present', async (t) => {
  const { cam } = setup();
  const caps = await cam.capabilities();
  t.match(caps, {
    driver: 'vivid',
    capture: true,
    m2m: false,
    multiplanar: false,
    streaming: true,
  });
  const noDeviceCaps = capabilitiesOf({
    ...vividLike().cap,
    capabilities: 0x1,
    deviceCaps: 0x8000,
  });
  t.equal(noDeviceCaps.capture, true, 'without V4L2_CAP_DEVICE_CAPS the physical caps count');
  t.equal(noDeviceCaps.m2m, false);
});

t.test('formats: sizes, rates, emulation flag', async (t) => {
  const { cam } = setup();
  const fmts = await cam.formats();
  t.equal(fmts.length, 2);
  t.match(fmts[0], { fourcc: 'YUYV', compressed: false, emulated: false });
  t.same(fmts[0]?.sizes, [
    { width: 640, height: 480, fps: [30, 15] },
    { width: 320, height: 240, fps: [30, 15] },
  ]);
  t.equal(fmts[1]?.emulated, true, 'libv4l-emulated formats are marked');
  const pi = new V4l2Camera({
    binding: new FakeV4l2Binding().add('/dev/video0', bcm2835V4l2Like()),
    path: '/dev/video0',
  });
  const piFmts = await pi.formats();
  t.match(
    piFmts.find((f) => f.fourcc === 'H264'),
    { compressed: true },
  );
  t.same(
    piFmts[0]?.sizes.map((s) => `${s.width}x${s.height}`),
    ['2592x1944', '32x32'],
    'stepwise ranges report their corners',
  );
});

t.test(
  'setFormat returns what the driver negotiated; strict mode refuses a silent fallback',
  async (t) => {
    const { cam } = setup();
    const got = await cam.setFormat({ width: 640, height: 480, pixelFormat: 'H264', fps: 30 });
    t.same(
      got,
      { width: 640, height: 480, pixelFormat: 'YUYV', fps: 30 },
      'vivid answers YUYV to H264',
    );
    const e = await cam
      .setFormat({ width: 640, height: 480, pixelFormat: 'H264', fps: 30 }, { strict: true })
      .catch((x: unknown) => x);
    t.ok(e instanceof FormatMismatchError);
    t.same((e as FormatMismatchError).got.pixelFormat, 'YUYV');
    t.same(
      await cam.setFormat(
        { width: 320, height: 240, pixelFormat: 'YUYV', fps: 15 },
        { strict: true },
      ),
      {
        width: 320,
        height: 240,
        pixelFormat: 'YUYV',
        fps: 15,
      },
    );
    t.same(await cam.currentFormat(), { width: 320, height: 240, pixelFormat: 'YUYV', fps: 15 });
  },
);

t.test('captureFrame and a JPEG still from a raw frame (real ffmpeg)', async (t) => {
  const { b, cam } = setup();
  await cam.setFormat({ width: 320, height: 240, pixelFormat: 'YUYV', fps: 30 });
  const dev = b.devices.get('/dev/video0');
  if (!dev) throw new Error('fake device missing');
  // mid-grey YUYV: Y=128, U=V=128
  dev.frame = new Uint8Array(320 * 240 * 2).fill(128);
  const frame = await cam.captureFrame();
  t.equal(frame.data.length, 320 * 240 * 2);
  t.equal(frame.format.pixelFormat, 'YUYV');
  const jpeg = await cam.still({ maxWidth: 160 });
  t.equal(jpeg[0], 0xff);
  t.equal(jpeg[1], 0xd8, 'JPEG SOI marker');
});

t.test('presence and discovery', async (t) => {
  const { b, cam } = setup();
  t.ok(await cam.present());
  const all = await discoverDevices(b);
  t.same(
    all.map((d) => d.path),
    ['/dev/video0', '/dev/video1'],
  );
  t.same(
    (await discoverCameras(b)).map((d) => d.path),
    ['/dev/video0'],
    'M2M codecs are not cameras',
  );
  b.remove('/dev/video0');
  t.notOk(await cam.present(), 'unplugged');
  const e = await cam.capabilities().catch((x: unknown) => x);
  t.ok(e instanceof CameraError);
  t.equal((e as CameraError).code, 'ECAMERA_GONE');
  t.same((await discoverCameras(b)).length, 0);
});

t.test('ffmpeg input arguments read the device directly', async (t) => {
  const { cam } = setup();
  t.same(cam.ffmpegInput({ width: 640, height: 480, pixelFormat: 'YUYV', fps: 30 }), [
    '-f',
    'v4l2',
    '-input_format',
    'yuyv422',
    '-video_size',
    '640x480',
    '-framerate',
    '30',
    '-i',
    '/dev/video0',
  ]);
  t.equal(ffmpegInputFormatOf('h264'), 'h264');
  t.throws(
    () => cam.ffmpegInput({ width: 640, height: 480, pixelFormat: 'XXXX', fps: 30 }),
    /cannot read pixel format/,
  );
});

t.test('watch turns a vanished node into unplugged/replugged', async (t) => {
  const { b, cam } = setup();
  const keep = setInterval(() => undefined, 1000);
  const events: string[] = [];
  const stop = cam.watch((e) => events.push(e), 10);
  await new Promise((r) => setTimeout(r, 40));
  const dev = b.remove('/dev/video0');
  // wait for what the watcher reports (polls are late on a loaded machine), not for a time
  while (events.length < 1) await new Promise((r) => setTimeout(r, 5));
  if (dev) b.add('/dev/video0', dev);
  while (events.length < 2) await new Promise((r) => setTimeout(r, 5));
  stop();
  clearInterval(keep);
  t.same(events, ['unplugged', 'replugged']);
});

t.test('camera-native H.264 settings go to the camera as V4L2 controls', async (t) => {
  const { bcm2835V4l2Like: pi } = await import('../../../hw/camera/fake-v4l2-binding.js');
  const b = new FakeV4l2Binding().add('/dev/video0', pi()).add('/dev/video1', vividLike());
  const cam = new V4l2Camera({ binding: b, path: '/dev/video0' });
  t.same(await cam.configureH264({ bitrateKbps: 4000, gopFrames: 30 }), []);
  t.same(
    [...(b.devices.get('/dev/video0')?.controlValues ?? new Map<number, number>())],
    [
      [0x009909cf, 4_000_000],
      [0x00990a66, 30],
      [0x009909e2, 1],
    ],
  );
  const webcam = new V4l2Camera({ binding: b, path: '/dev/video1' });
  t.same(
    await webcam.configureH264({ bitrateKbps: 1000, gopFrames: 15 }),
    ['video_bitrate', 'h264_i_frame_period', 'repeat_sequence_header'],
    'refusals are reported by name',
  );
});

t.test('a replugged camera that comes back as another node is found by identity', async (t) => {
  const b = new FakeV4l2Binding()
    .add('/dev/video0', vividLike())
    .add('/dev/video5', vicodecEncoderLike());
  const cam = new V4l2Camera({ binding: b, path: '/dev/video0' });
  t.ok(await cam.present());
  const dev = b.remove('/dev/video0');
  t.notOk(await cam.present(), 'gone');
  t.equal(cam.id, '/dev/video0');
  if (dev) b.add('/dev/video2', dev);
  t.ok(await cam.present(), 'back, as /dev/video2');
  t.equal(cam.id, '/dev/video2');
  t.same(
    cam.ffmpegInput({ width: 320, height: 240, pixelFormat: 'YUYV', fps: 15 }).at(-1),
    '/dev/video2',
  );
  // another camera (different identity) on the old node is not mistaken for ours
  const other = new FakeV4l2Binding().add('/dev/video0', vividLike());
  const c2 = new V4l2Camera({ binding: other, path: '/dev/video0' });
  t.ok(await c2.present());
  other.remove('/dev/video0');
  other.add('/dev/video0', { ...vividLike(), cap: { ...vividLike().cap, busInfo: 'usb-other' } });
  t.notOk(await c2.present(), 'a different device on the same node is not ours');
});
