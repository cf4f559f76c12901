import t from 'tap';
import type { Camera } from '../../../hw/camera/camera.js';
import {
  FakeV4l2Binding,
  bcm2835V4l2Like,
  vividLike,
} from '../../../hw/camera/fake-v4l2-binding.js';
import { V4l2Camera } from '../../../hw/camera/v4l2-camera.js';
import { encoderConfigSchema } from '../../../hw/encoder/encoder.js';
import { defaultProbeM2m, negotiateEncoder } from '../../../hw/encoder/negotiate.js';

const config = encoderConfigSchema.parse({ width: 640, height: 480, fps: 30, bitrateKbps: 4000 });
const software = async (): Promise<ReadonlySet<string>> => new Set(['libx264']);

t.test('a camera that encodes H.264 keeps it and gets bitrate and GOP as controls', async (t) => {
  const b = new FakeV4l2Binding().add('/dev/video0', bcm2835V4l2Like());
  const camera = new V4l2Camera({ binding: b, path: '/dev/video0' });
  const warnings: string[] = [];
  const r = await negotiateEncoder({
    camera,
    config,
    probeM2m: async () => [],
    ffmpegEncoders: software,
    warn: (m) => warnings.push(m),
  });
  t.equal(r.choice.path, 'camera-h264');
  t.same(r.format, { width: 640, height: 480, pixelFormat: 'H264', fps: 30 });
  t.same(warnings, []);
  const ctrls = b.devices.get('/dev/video0')?.controlValues;
  t.equal(ctrls?.get(0x009909cf), 4_000_000, 'bitrate control');
  t.equal(
    ctrls?.get(0x00990a66),
    15,
    'I-frame period = 0.5 s of frames (the default keyframe interval)',
  );
});

t.test(
  'a driver that answers another size is warned about and scaled in the encoder',
  async (t) => {
    const b = new FakeV4l2Binding().add('/dev/video0', vividLike());
    const camera = new V4l2Camera({ binding: b, path: '/dev/video0' });
    const warnings: string[] = [];
    const r = await negotiateEncoder({
      camera,
      config: { ...config, width: 1280, height: 720 },
      probeM2m: async () => [],
      ffmpegEncoders: software,
      warn: (m) => warnings.push(m),
    });
    t.equal(r.choice.path, 'software');
    t.match(r.format, { pixelFormat: 'YUYV', width: 640, height: 480 });
    t.equal(warnings.length, 1);
    t.match(warnings[0], /instead of .*scaling in the encoder/);
  },
);

t.test('H.264 asked, raw answered: warned, and the raw path is chosen instead', async (t) => {
  const b = new FakeV4l2Binding().add('/dev/video0', bcm2835V4l2Like());
  const cam = new V4l2Camera({ binding: b, path: '/dev/video0' });
  // A driver that lists H.264 but silently answers YU12 to it.
  const liar: Camera = {
    id: cam.id,
    kind: cam.kind,
    capabilities: () => cam.capabilities(),
    formats: () => cam.formats(),
    currentFormat: () => cam.currentFormat(),
    setFormat: (want) =>
      cam.setFormat(want.pixelFormat === 'H264' ? { ...want, pixelFormat: 'YU12' } : want),
    captureFrame: () => cam.captureFrame(),
    still: (o) => cam.still(o),
    present: () => cam.present(),
    ffmpegInput: (f) => cam.ffmpegInput(f),
    watch: (fn, ms) => cam.watch(fn, ms),
  };
  const warnings: string[] = [];
  const r = await negotiateEncoder({
    camera: liar,
    config,
    probeM2m: async () => [],
    ffmpegEncoders: software,
    warn: (m) => warnings.push(m),
  });
  t.equal(r.choice.path, 'software');
  t.equal(r.format.pixelFormat, 'YU12');
  t.match(warnings, [/negotiated .* when asked for .*H264/]);
});

t.test('no M2M probe for a simulated camera', async (t) => {
  t.same(await defaultProbeM2m({ kind: 'simulated' } as Camera), []);
});
