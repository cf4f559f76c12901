import t from 'tap';
import type { PixelFormatInfo } from '../../../hw/camera/camera.js';
import {
  EncoderUnavailableError,
  encoderConfigSchema,
  gopFrames,
  isH264Encoder,
  parseFfmpegEncoders,
  probeFfmpegEncoders,
  selectEncoder,
} from '../../../hw/encoder/encoder.js';
import type { M2mDevice } from '../../../hw/encoder/encoder.js';

const raw = (fourcc: string, emulated = false): PixelFormatInfo => ({
  fourcc,
  description: fourcc,
  compressed: false,
  emulated,
  sizes: [],
});
const h264: PixelFormatInfo = {
  fourcc: 'H264',
  description: 'H.264',
  compressed: true,
  emulated: false,
  sizes: [],
};
const bcm2835Codec: M2mDevice = {
  path: '/dev/video11',
  driver: 'bcm2835-codec',
  card: 'bcm2835-codec-encode',
  outputFormats: ['YU12', 'NV12'],
  captureFormats: ['H264'],
  multiplanar: true,
};
const bcm2835Decoder: M2mDevice = {
  ...bcm2835Codec,
  path: '/dev/video10',
  outputFormats: ['H264'],
  captureFormats: ['YU12'],
};
const vicodec: M2mDevice = {
  path: '/dev/video2',
  driver: 'vicodec',
  card: 'vicodec',
  outputFormats: ['YU12'],
  captureFormats: ['FWHT'],
  multiplanar: false,
};
const all = new Set(['libx264', 'h264_v4l2m2m', 'mjpeg']);

t.test('camera-native H.264 wins when the camera offers it (bcm2835-v4l2 on Debian)', async (t) => {
  const c = selectEncoder({
    camera: { id: '/dev/video0', kind: 'v4l2', formats: [raw('YU12'), h264] },
    m2m: [bcm2835Codec],
    ffmpegEncoders: all,
  });
  t.equal(c.path, 'camera-h264');
  t.equal(c.inputPixelFormat, 'H264');
  t.equal(c.warning, undefined);
});

t.test('M2M H.264 encoder next (bcm2835-codec at /dev/video11), decoders ignored', async (t) => {
  const c = selectEncoder({
    camera: { id: '/dev/video0', kind: 'v4l2', formats: [raw('YUYV'), raw('MJPG')] },
    m2m: [bcm2835Decoder, bcm2835Codec],
    ffmpegEncoders: all,
  });
  t.equal(c.path, 'v4l2-m2m');
  t.equal(c.device, '/dev/video11');
  t.equal(c.inputPixelFormat, 'YUYV', 'raw preferred over MJPG');
  t.same(
    c.rejected.map((r) => r.path),
    ['camera-h264'],
  );
  t.ok(isH264Encoder(bcm2835Codec));
  t.notOk(isH264Encoder(bcm2835Decoder));
  t.notOk(isH264Encoder(vicodec));
});

t.test(
  'an FWHT-only M2M device (vicodec) is not an H.264 encoder: software with a loud warning',
  async (t) => {
    const c = selectEncoder({
      camera: { id: '/dev/video0', kind: 'v4l2', formats: [raw('YUYV'), raw('RGB3', true)] },
      m2m: [vicodec],
      ffmpegEncoders: all,
    });
    t.equal(c.path, 'software');
    t.match(c.warning, /SOFTWARE H\.264 ENCODING/);
    t.match(
      c.warning,
      /no M2M device encodes H\.264; found \/dev\/video2 \(vicodec: YU12 -> FWHT\)/,
    );
    t.same(
      c.rejected.map((r) => r.path),
      ['camera-h264', 'v4l2-m2m'],
    );
  },
);

t.test('emulated formats are never chosen (ffmpeg reads the node without libv4l)', async (t) => {
  const c = selectEncoder({
    camera: { id: 'x', kind: 'v4l2', formats: [raw('RGB3', true), raw('GREY')] },
    m2m: [],
    ffmpegEncoders: all,
  });
  t.equal(c.inputPixelFormat, 'GREY');
  t.throws(
    () =>
      selectEncoder({
        camera: { id: 'x', kind: 'v4l2', formats: [raw('RGB3', true)] },
        m2m: [],
        ffmpegEncoders: all,
      }),
    EncoderUnavailableError,
  );
});

t.test('ffmpeg without h264_v4l2m2m cannot use the M2M path', async (t) => {
  const c = selectEncoder({
    camera: { id: 'x', kind: 'v4l2', formats: [raw('YU12')] },
    m2m: [bcm2835Codec],
    ffmpegEncoders: new Set(['libx264']),
  });
  t.equal(c.path, 'software');
  t.match(c.rejected[1]?.why, /lacks the h264_v4l2m2m/);
});

t.test('preferences force a path or fail clearly', async (t) => {
  const cam = { id: '/dev/video0', kind: 'v4l2' as const, formats: [raw('YU12'), h264] };
  t.equal(
    selectEncoder({ camera: cam, m2m: [bcm2835Codec], ffmpegEncoders: all }, 'software').path,
    'software',
  );
  t.equal(
    selectEncoder({ camera: cam, m2m: [bcm2835Codec], ffmpegEncoders: all }, 'v4l2-m2m').path,
    'v4l2-m2m',
  );
  const e = t.throws(() =>
    selectEncoder(
      { camera: { ...cam, formats: [raw('YU12')] }, m2m: [], ffmpegEncoders: all },
      'camera-h264',
    ),
  );
  t.match(e, { code: 'EENCODER_UNAVAILABLE', message: /preference camera-h264.*offers no H264/ });
  t.throws(
    () =>
      selectEncoder({
        camera: { ...cam, formats: [raw('YU12')] },
        m2m: [],
        ffmpegEncoders: new Set(),
      }),
    /ffmpeg lacks libx264/,
  );
});

t.test('config: defaults, GOP half a second (live latency), validation', async (t) => {
  const c = encoderConfigSchema.parse({});
  t.match(c, { width: 1280, height: 720, fps: 15, bitrateKbps: 2000, gopSeconds: 0.5 });
  t.equal(gopFrames(c), 8);
  t.equal(gopFrames({ fps: 30, gopSeconds: 1 }), 30);
  t.equal(gopFrames({ fps: 2, gopSeconds: 0.25 }), 1);
  t.notOk(encoderConfigSchema.safeParse({ width: 641 }).success, 'odd width refused');
  t.notOk(encoderConfigSchema.safeParse({ bitrateKbps: 10 }).success);
});

t.test('parse ffmpeg -encoders, and the real ffmpeg has libx264', async (t) => {
  const text = ` V..... = Video\n ------\n V....D libx264              libx264 H.264\n V..... h264_v4l2m2m         V4L2 mem2mem\n A....D aac                  AAC\n`;
  t.same([...parseFfmpegEncoders(text)], ['libx264', 'h264_v4l2m2m', 'aac']);
  const real = await probeFfmpegEncoders();
  t.ok(real.has('libx264'));
});
