import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SILENT } from '../../../base/logger.js';
import { SimulatedTone } from '../../../hw/audio/simulated-tone.js';
import { run } from '../../../hw/os/run.js';
import { parseInit } from '../../../firmware/media/fmp4.js';
import { SimulatedCamera } from '../../../hw/camera/simulated-camera.js';
import type { EncoderChoice } from '../../../hw/encoder/encoder.js';
import { encoderConfigSchema } from '../../../hw/encoder/encoder.js';
import {
  FMP4_MOVFLAGS,
  buildEncoderArgs,
  startEncoder,
} from '../../../hw/encoder/ffmpeg-encoder.js';

const config = encoderConfigSchema.parse({
  width: 320,
  height: 240,
  fps: 10,
  bitrateKbps: 300,
  gopSeconds: 1,
});
const software: EncoderChoice = {
  path: 'software',
  inputPixelFormat: 'YU12',
  reason: 'x',
  rejected: [],
};
const input = ['-f', 'v4l2', '-input_format', 'yuyv422', '-i', '/dev/video0'];
const motion = { url: 'unix:/run/x/motion.sock', width: 64, height: 48, fps: 4 };

const after = (args: readonly string[], flag: string): string | undefined =>
  args[args.indexOf(flag) + 1];

t.test(
  'software path: libx264, GOP = fps x gopSeconds, bitrate cap, fMP4 on stdout, grey motion tap',
  async (t) => {
    const a = buildEncoderArgs({ input, choice: software, config, motion });
    t.equal(after(a, '-c:v'), 'libx264');
    t.equal(after(a, '-g'), '10');
    t.equal(after(a, '-keyint_min'), '10');
    t.equal(after(a, '-b:v'), '300k');
    t.equal(after(a, '-maxrate'), '300k');
    t.equal(after(a, '-movflags'), FMP4_MOVFLAGS);
    t.ok(a.includes('pipe:1'));
    t.match(
      after(a, '-filter_complex'),
      /split=2\[v\]\[m0\];\[m0\]fps=4,scale=64:48:flags=area,format=gray\[m\]/,
    );
    t.same(a.slice(-7), [
      '-map',
      '[m]',
      '-f',
      'rawvideo',
      '-pix_fmt',
      'gray',
      'unix:/run/x/motion.sock',
    ]);
    t.same(
      a.slice(a.indexOf('-f'), a.indexOf('-f') + 2),
      ['-f', 'v4l2'],
      'the camera device is read by ffmpeg',
    );
    const noMotion = buildEncoderArgs({ input, choice: software, config });
    t.notOk(noMotion.includes('rawvideo'));
    t.equal(after(noMotion, '-filter_complex'), '[0:v]scale=320:240,format=yuv420p[v]');
  },
);

t.test(
  'M2M path uses h264_v4l2m2m; camera-native copies and decodes keyframes for motion',
  async (t) => {
    const m2m = buildEncoderArgs({
      input,
      choice: { ...software, path: 'v4l2-m2m', device: '/dev/video11' },
      config,
      motion,
    });
    t.equal(after(m2m, '-c:v'), 'h264_v4l2m2m');
    t.equal(after(m2m, '-g'), '10');
    const native = buildEncoderArgs({
      input,
      choice: { ...software, path: 'camera-h264', inputPixelFormat: 'H264' },
      config,
      motion,
    });
    t.equal(after(native, '-c:v'), 'copy');
    t.equal(after(native, '-skip_frame'), 'nokey');
    t.ok(native.indexOf('-skip_frame') < native.indexOf('-i'), 'decoder option precedes the input');
    t.equal(after(native, '-fps_mode'), 'passthrough');
    const nativeNoMotion = buildEncoderArgs({
      input,
      choice: { ...software, path: 'camera-h264' },
      config,
    });
    t.notOk(nativeNoMotion.includes('-skip_frame'));
  },
);

t.test('a real encoder run on the simulated camera yields fMP4 on stdout', async (t) => {
  const cam = new SimulatedCamera({ width: 160, height: 120, fps: 10 });
  const fmt = await cam.setFormat({ width: 160, height: 120, pixelFormat: 'YU12', fps: 10 });
  const args = buildEncoderArgs({
    input: ['-t', '1.5', ...cam.ffmpegInput(fmt)],
    choice: software,
    config: encoderConfigSchema.parse({
      width: 160,
      height: 120,
      fps: 10,
      bitrateKbps: 100,
      softwarePreset: 'ultrafast',
    }),
  });
  const enc = startEncoder({ args, logger: SILENT });
  const chunks: Buffer[] = [];
  enc.stdout.on('data', (c: Buffer) => chunks.push(c));
  const x = await enc.exited;
  t.equal(x.exitCode, 0, enc.stderrTail());
  const out = Buffer.concat(chunks);
  t.equal(out.toString('latin1', 4, 8), 'ftyp');
  t.ok(out.includes(Buffer.from('moof')), 'has fragments');
});

t.test('stop() ends a running encoder', async (t) => {
  const cam = new SimulatedCamera({ width: 160, height: 120, fps: 10 });
  const fmt = await cam.currentFormat();
  const enc = startEncoder({
    args: buildEncoderArgs({
      input: cam.ffmpegInput({ ...fmt, width: 160, height: 120 }),
      choice: software,
      config,
    }),
    logger: SILENT,
  });
  t.ok(enc.pid);
  await new Promise((r) => setTimeout(r, 300));
  await enc.stop(2000);
  t.throws(() => process.kill(enc.pid!, 0), { code: 'ESRCH' }, 'the ffmpeg process is gone');
});

const tone = {
  input: ['-f', 'alsa', '-i', 'hw:1,0'],
  sampleRate: 48_000,
  channels: 1,
  bitrateKbps: 48,
};

t.test('audio: the same AAC-LC output on every video path, in the main output only', async (t) => {
  const choices: EncoderChoice[] = [
    software,
    { ...software, path: 'v4l2-m2m', device: '/dev/video11' },
    { ...software, path: 'camera-h264', inputPixelFormat: 'H264' },
  ];
  for (const choice of choices) {
    const a = buildEncoderArgs({ input, choice, config, motion, audio: tone });
    const inputs = a.flatMap((x, i) => (x === '-i' ? [a[i + 1]] : []));
    t.same(inputs, ['/dev/video0', 'hw:1,0'], `${choice.path}: camera is input 0, audio input 1`);
    const main = a.slice(0, a.indexOf('pipe:1'));
    const tap = a.slice(a.indexOf('pipe:1'));
    t.same(
      main.slice(main.indexOf('1:a') - 1, main.indexOf('1:a') + 11),
      [
        '-map',
        '1:a',
        '-c:a',
        'aac',
        '-profile:a',
        'aac_low',
        '-b:a',
        '48k',
        '-ar',
        '48000',
        '-ac',
        '1',
      ],
      `${choice.path}: native AAC-LC muxed with the video`,
    );
    t.notOk(tap.includes('1:a'), `${choice.path}: the motion tap stays video only`);
    t.ok(
      after(a, '-thread_queue_size') === '512' &&
        a.indexOf('-thread_queue_size') < a.indexOf('/dev/video0'),
      `${choice.path}: a deeper queue for the camera input next to a live microphone`,
    );
  }
  const noAudio = buildEncoderArgs({ input, choice: software, config, motion });
  t.notOk(noAudio.includes('-c:a'), 'audio off: no audio output');
  t.notOk(noAudio.includes('-thread_queue_size'));
});

t.test('a real run on the camera-native path (H.264 copied) muxes the audio too', async (t) => {
  // A camera that delivers H.264 itself: an elementary stream stands in for its capture node.
  const dir = await mkdtemp(join(tmpdir(), 'vigil-h264-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const es = join(dir, 'camera.h264');
  await run(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=s=160x120:r=10',
      '-t',
      '2',
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-g',
      '10',
      '-bf',
      '0',
      '-pix_fmt',
      'yuv420p',
      '-f',
      'h264',
      es,
    ],
    { timeoutMs: 60_000 },
  );
  const src = new SimulatedTone();
  const args = buildEncoderArgs({
    input: ['-re', '-framerate', '10', '-f', 'h264', '-i', es],
    choice: { ...software, path: 'camera-h264', inputPixelFormat: 'H264' },
    config,
    audio: {
      input: ['-t', '2', ...src.ffmpegInput({ sampleRate: 48_000, channels: 1 })],
      sampleRate: 48_000,
      channels: 1,
      bitrateKbps: 48,
    },
  });
  const enc = startEncoder({ args, logger: SILENT });
  const chunks: Buffer[] = [];
  enc.stdout.on('data', (c: Buffer) => chunks.push(c));
  const x = await enc.exited;
  t.equal(x.exitCode, 0, enc.stderrTail());
  const out = Buffer.concat(chunks);
  const moovAt = out.indexOf(Buffer.from('moov')) - 4;
  const init = parseInit(out.subarray(0, out.indexOf(Buffer.from('moof')) - 4));
  t.ok(moovAt > 0);
  t.match(init.codec, /^avc1\.[0-9a-f]{6},mp4a\.40\.2$/, 'copied H.264 + AAC-LC');
});
