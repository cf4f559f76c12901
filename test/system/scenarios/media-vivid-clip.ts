// Issue 7 (VM): vivid capture through Vigil's V4L2 camera adapter (QUERYCAP, formats,
// negotiated-format check, a frame and a JPEG still), encoder selection on a raw-only camera
// (software, reported loudly), then vivid -> ffmpeg/libx264 fMP4 -> an event clip sealed with
// the real MLS sealer, decrypted by a paired companion and checked with ffprobe; finally a
// hot-unplug (driver unbind) parks the pipeline and a rebind brings it back.
// @timeout 900
// @memory 2048
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { check, log, outDir, scenario } from '../guest/harness.js';
import { loadVivid } from '../guest/devices.js';
import { LibV4l2Binding } from '../../../hw/camera/v4l2-binding.js';
import { V4l2Camera, discoverCameras } from '../../../hw/camera/v4l2-camera.js';
import { FormatMismatchError } from '../../../hw/camera/camera.js';
import { MemoryLogger } from '../../../base/logger.js';
import { createMediaPipeline } from '../../../firmware/media/pipeline.js';
import { ffprobe, manualClip, moreFragments, pairedSealer, until, waitFor } from './_media-clip.js';

async function vividPlatformDevice(): Promise<string> {
  const { readdir } = await import('node:fs/promises');
  const devs = (await readdir('/sys/bus/platform/drivers/vivid')).filter((d) =>
    d.startsWith('vivid.'),
  );
  const d = devs[0];
  check(d !== undefined, 'no vivid platform device bound');
  return d;
}

scenario(async () => {
  const device = await loadVivid();
  const binding = new LibV4l2Binding();
  const cams = await discoverCameras(binding);
  log(`cameras: ${cams.map((c) => `${c.path} (${c.caps.driver})`).join(', ')}`);
  check(
    cams.some((c) => c.path === device),
    `discovery missed ${device}`,
  );
  const cam = new V4l2Camera({ binding, path: device });
  const caps = await cam.capabilities();
  check(caps.capture && !caps.m2m && caps.streaming, `vivid caps: ${JSON.stringify(caps)}`);
  const formats = await cam.formats();
  log(
    `formats: ${formats.map((f) => `${f.fourcc}${f.emulated ? '(emulated)' : ''}[${f.sizes.length}]`).join(' ')}`,
  );
  const yuyv = formats.find((f) => f.fourcc === 'YUYV' && !f.emulated);
  check(yuyv !== undefined, 'vivid offers no native YUYV');
  check(
    yuyv.sizes.some((s) => s.width === 640 && s.height === 360),
    'no 640x360 webcam size listed',
  );

  // setFormat(H264) silently falls back: the adapter reports it, strict mode refuses it.
  const got = await cam.setFormat({ width: 640, height: 360, pixelFormat: 'H264', fps: 15 });
  check(got.pixelFormat !== 'H264', `vivid accepted H264?! ${JSON.stringify(got)}`);
  const strict = await cam
    .setFormat({ width: 640, height: 360, pixelFormat: 'H264', fps: 15 }, { strict: true })
    .catch((e: unknown) => e);
  check(strict instanceof FormatMismatchError, 'strict setFormat did not refuse the fallback');
  const fmt = await cam.setFormat(
    { width: 320, height: 180, pixelFormat: 'YUYV', fps: 15 },
    { strict: true },
  );
  log(`negotiated ${JSON.stringify(fmt)}`);
  log('capturing one frame through v4l2-camera-ts');
  const frame = await cam.captureFrame();
  log(`frame: ${frame.data.length} bytes`);
  check(frame.data.length === 320 * 180 * 2, `frame is ${frame.data.length} bytes`);
  const jpeg = await cam.still({ maxWidth: 320 });
  check(jpeg[0] === 0xff && jpeg[1] === 0xd8, 'still is not a JPEG');
  await writeFile(join(outDir(), 'vivid-still.jpg'), jpeg);

  // A paired companion and the real sealer.
  const paired = await pairedSealer('vigil-media-vm-');
  const logger = new MemoryLogger('vm');
  const p = createMediaPipeline({
    camera: cam,
    sealer: paired.sealer,
    logger,
    config: {
      encoder: { width: 320, height: 180, fps: 15, bitrateKbps: 300, softwarePreset: 'ultrafast' },
      clips: { preRollS: 1, postRollS: 1 },
      // The side stream runs (exercising ffmpeg's second output in the guest), but vivid's
      // ticking overlay must not start events of its own: the whole picture is masked.
      motion: { masks: [{ x: 0, y: 0, w: 1, h: 1 }] },
      cameraWatchMs: 250,
      restart: { minMs: 200, maxMs: 2000 },
    },
  });
  await p.start();
  try {
    const st = p.status();
    log(
      `encoder: ${st.encoder.path} (${st.encoder.reason}); rejected: ${JSON.stringify(st.encoder.rejected)}`,
    );
    check(
      st.encoder.path === 'software',
      `expected the software path on vivid, got ${String(st.encoder.path)}`,
    );
    check(
      /SOFTWARE H\.264/.test(st.encoder.warning ?? ''),
      'no software-encoder warning in status',
    );
    check(
      st.encoder.rejected.some((r) => r.path === 'camera-h264' && r.why.includes(device)),
      'camera-native rejection not reported',
    );
    await moreFragments(p, 2, 'the first fragments');
    const { closed, file: mp4 } = await manualClip(
      p,
      paired,
      2500,
      join(outDir(), 'vivid-clip.mp4'),
    );
    const j = await ffprobe<{
      format?: { duration?: string };
      streams?: { codec_name?: string; width?: number; height?: number }[];
    }>(mp4, 'format=duration:stream=codec_name,width,height');
    const duration = Number(j.format?.duration);
    log(`decrypted clip: ${JSON.stringify(j)}; sealed duration ${closed.durationMs} ms`);
    check(j.streams?.[0]?.codec_name === 'h264', 'decrypted clip is not H.264');
    check(j.streams[0].width === 320 && j.streams[0].height === 180, 'wrong clip size');
    check(duration >= 3, `clip too short: ${duration} s (pre-roll + 2.5 s event + post-roll)`);
    check(
      Math.abs(duration * 1000 - closed.durationMs) < 200,
      'sealed duration differs from ffprobe',
    );

    // Hot-unplug: unbind the vivid platform device (open file handles get ENODEV, the node goes).
    const pdev = await vividPlatformDevice();
    const oldPid = p.status().encoder.pid;
    await writeFile('/sys/bus/platform/drivers/vivid/unbind', pdev);
    await until('camera-missing', () => p.status().state === 'camera-missing', 30_000);
    log(`unplugged: state ${p.status().state}, last exit: ${String(p.status().encoder.lastExit)}`);
    const restarted = waitFor(
      p,
      'encoder restart after replug',
      (e) => e.type === 'encoder-started',
      60_000,
    );
    await writeFile('/sys/bus/platform/drivers/vivid/bind', pdev);
    await restarted;
    await moreFragments(p, 2, 'fragments after replug');
    check(p.status().state === 'running', `state after replug: ${p.status().state}`);
    check(p.status().encoder.pid !== oldPid, 'encoder was not restarted');
    log(`replugged: running again, restarts=${p.status().encoder.restarts}`);
  } finally {
    await p.stop();
    await writeFile(join(outDir(), 'media-log.jsonl'), logger.lines.join('\n'));
  }
  check((await readFile(join(outDir(), 'vivid-clip.mp4'))).length > 1000, 'clip file missing');
});
