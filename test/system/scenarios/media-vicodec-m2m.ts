// Issue 7 (VM): the V4L2 memory-to-memory path through Vigil's own adapter: M2M discovery over
// real ioctls (QUERYCAP + ENUM_FMT on both queues), an FWHT encode + decode round trip through
// vicodec with V4l2CtlM2mCodec (PSNR checked), and encoder selection per kind of device:
// vicodec is an M2M encoder but not an H.264 one, so a raw camera falls back to software and
// says why; an H.264 M2M encoder or an H.264 camera would be chosen first.
// @timeout 240
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { check, log, outDir, scenario } from '../guest/harness.js';
import { loadModule, loadVivid } from '../guest/devices.js';
import { LibV4l2Binding } from '../../../hw/camera/v4l2-binding.js';
import { V4l2Camera } from '../../../hw/camera/v4l2-camera.js';
import { probeFfmpegEncoders, selectEncoder } from '../../../hw/encoder/encoder.js';
import {
  V4l2CtlM2mCodec,
  findDecoder,
  findEncoder,
  probeM2mDevices,
} from '../../../hw/encoder/v4l2-m2m.js';
import { run } from '../../../hw/os/run.js';

const W = 640;
const H = 480;
const N = 10;

scenario(async () => {
  await loadModule('vicodec');
  const camPath = await loadVivid();
  const binding = new LibV4l2Binding();
  let devices = await probeM2mDevices(binding);
  for (let i = 0; i < 50 && !findEncoder(devices, 'FWHT'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    devices = await probeM2mDevices(binding);
  }
  log(
    `M2M devices: ${devices.map((d) => `${d.path} ${d.driver} ${d.outputFormats.join('/')} -> ${d.captureFormats.join('/')}${d.multiplanar ? ' (mplane)' : ''}`).join('; ')}`,
  );
  const enc = findEncoder(devices, 'FWHT');
  const dec = findDecoder(devices, 'FWHT');
  check(enc !== undefined, 'no vicodec FWHT encoder found by the M2M probe');
  check(dec !== undefined, 'no vicodec FWHT decoder found by the M2M probe');
  check(!devices.some((d) => d.path === camPath), 'the vivid camera was listed as an M2M device');

  // Encode + decode round trip through the adapter.
  const input = '/tmp/in.yuv';
  await run('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-f',
    'lavfi',
    '-i',
    `testsrc2=size=${W}x${H}:rate=30`,
    '-frames:v',
    String(N),
    '-pix_fmt',
    'yuv420p',
    '-f',
    'rawvideo',
    '-y',
    input,
  ]);
  const rawBytes = (await stat(input)).size;
  const encoded = await new V4l2CtlM2mCodec({ device: enc }).process({
    input,
    output: '/tmp/out.fwht',
    inFourcc: 'YU12',
    outFourcc: 'FWHT',
    width: W,
    height: H,
    frames: N,
    controls: { video_gop_size: 5 },
  });
  log(`encoded ${rawBytes} raw bytes -> ${encoded.bytesOut} FWHT bytes`);
  check(
    encoded.bytesOut > 0 && encoded.bytesOut < rawBytes,
    `encoder output ${encoded.bytesOut} bytes`,
  );
  const decoded = await new V4l2CtlM2mCodec({ device: dec }).process({
    input: '/tmp/out.fwht',
    output: '/tmp/dec.yuv',
    inFourcc: 'FWHT',
    outFourcc: 'YU12',
    frames: N,
  });
  check(decoded.bytesOut === rawBytes, `decoded ${decoded.bytesOut} bytes, expected ${rawBytes}`);
  const psnrRun = await run('ffmpeg', [
    '-hide_banner',
    '-f',
    'rawvideo',
    '-pix_fmt',
    'yuv420p',
    '-s',
    `${W}x${H}`,
    '-i',
    input,
    '-f',
    'rawvideo',
    '-pix_fmt',
    'yuv420p',
    '-s',
    `${W}x${H}`,
    '-i',
    '/tmp/dec.yuv',
    '-lavfi',
    'psnr',
    '-f',
    'null',
    '-',
  ]);
  const m = /average:([0-9.]+|inf)/.exec(psnrRun.stderr);
  const psnr = m?.[1] === 'inf' ? Infinity : Number(m?.[1]);
  log(`round trip PSNR ${String(psnr)} dB`);
  check(psnr >= 30, `PSNR ${String(psnr)} dB < 30`);

  // Encoder selection on this machine: raw camera + FWHT-only M2M -> software, reported.
  const cam = new V4l2Camera({ binding, path: camPath });
  const ffmpegEncoders = await probeFfmpegEncoders();
  const camFormats = await cam.formats();
  const choice = selectEncoder({
    camera: { id: camPath, kind: 'v4l2', formats: camFormats },
    m2m: devices,
    ffmpegEncoders,
  });
  log(`selection: ${choice.path}; ${choice.warning ?? ''}`);
  check(choice.path === 'software', `expected software, got ${choice.path}`);
  check(
    choice.rejected.some((r) => r.path === 'v4l2-m2m' && r.why.includes('vicodec')),
    'the vicodec rejection is not reported',
  );
  // The same probe results with an H.264 M2M encoder added (what /dev/video11 looks like on a Pi)
  // and with an H.264-capable camera: the faster paths win.
  const withPiCodec = [
    ...devices,
    {
      path: '/dev/video11',
      driver: 'bcm2835-codec',
      card: 'bcm2835-codec-encode',
      outputFormats: ['YU12'],
      captureFormats: ['H264'],
      multiplanar: true,
    },
  ];
  check(
    selectEncoder({
      camera: { id: camPath, kind: 'v4l2', formats: camFormats },
      m2m: withPiCodec,
      ffmpegEncoders,
    }).path === 'v4l2-m2m',
    'an H.264 M2M encoder was not preferred',
  );
  const h264Cam = [
    ...camFormats,
    { fourcc: 'H264', description: 'H.264', compressed: true, emulated: false, sizes: [] },
  ];
  check(
    selectEncoder({
      camera: { id: camPath, kind: 'v4l2', formats: h264Cam },
      m2m: withPiCodec,
      ffmpegEncoders,
    }).path === 'camera-h264',
    'camera-native H.264 was not preferred',
  );
  // ffmpeg's own M2M H.264 encoder finds no device here (vicodec speaks FWHT only).
  const ff = await run(
    'ffmpeg',
    [
      '-hide_banner',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=320x240:rate=30',
      '-frames:v',
      '5',
      '-c:v',
      'h264_v4l2m2m',
      '-f',
      'null',
      '-',
    ],
    { okExitCodes: [0, 1, 187, 234, 251] },
  ).catch((e: unknown) => e);
  log(
    `ffmpeg h264_v4l2m2m on this guest: ${ff instanceof Error ? ff.message.slice(0, 160) : 'exit ' + String((ff as { exitCode: number }).exitCode)}`,
  );
  await writeFile(join(outDir(), 'selection.json'), JSON.stringify({ devices, choice }, null, 2));
});
