// Issue 4c: frames captured from vivid (virtual V4L2 camera) through v4l2-camera-ts.
// @group kernel
// @timeout 180
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { check, log, outDir, scenario } from '../guest/harness.js';
import { loadVivid } from '../guest/devices.js';
import { captureFrames, negotiateFormat } from '../guest/v4l2-capture.js';

const WIDTH = 640;
const HEIGHT = 480;
const FRAMES = 8;

scenario(async () => {
  const device = await loadVivid();
  log(`vivid capture node: ${device}`);
  const cap = await captureFrames({
    device,
    width: WIDTH,
    height: HEIGHT,
    pixelFormat: 'YUYV',
    frames: FRAMES,
  });
  log(`negotiated ${cap.pixelFormat} ${cap.width}x${cap.height} sizeImage=${cap.sizeImage}`);
  check(cap.pixelFormat === 'YUYV', `format: asked YUYV, got ${cap.pixelFormat}`);
  check(
    cap.width === WIDTH && cap.height === HEIGHT,
    `size: asked ${WIDTH}x${HEIGHT}, got ${cap.width}x${cap.height}`,
  );
  check(cap.frames.length === FRAMES, `got ${cap.frames.length} frames, wanted ${FRAMES}`);
  const expected = WIDTH * HEIGHT * 2;
  for (const [i, f] of cap.frames.entries()) {
    check(
      f.length === expected,
      `frame ${i}: ${f.length} bytes, YUYV ${WIDTH}x${HEIGHT} is ${expected}`,
    );
    // vivid's default pattern is colour bars: many distinct byte values, not a blank buffer
    const distinct = new Set(f.subarray(0, WIDTH * 2)).size;
    check(
      distinct > 16,
      `frame ${i}: first line has only ${distinct} distinct byte values (blank frame?)`,
    );
  }
  // vivid draws a frame counter/timestamp: consecutive frames differ
  const first = cap.frames[0];
  const last = cap.frames[FRAMES - 1];
  check(
    first !== undefined && last !== undefined && !first.equals(last),
    'first and last frames are identical',
  );
  await writeFile(join(outDir(), 'vivid-frame0.yuyv'), first);
  // documented fact: the package falls back silently when a format is missing (vivid: raw only)
  const h264 = negotiateFormat(device, WIDTH, HEIGHT, 'H264');
  log(`setFormat(H264) on vivid negotiated ${h264} (vivid offers raw formats only)`);
  check(h264 !== 'H264', 'vivid unexpectedly accepted H264');
});
