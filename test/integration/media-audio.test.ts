/**
 * Audio (issue #21 item 4) end to end with the REAL sealer: the simulated
 * camera plus its tone (ffmpeg lavfi sine) -> one ffmpeg (libx264 + native AAC)
 * -> fMP4 with two tracks -> motion clip with pre-roll -> MlsItemSealer -> a
 * paired companion decrypts, ffprobe checks both streams.
 *
 *  - audio on: the clip has an AAC-LC stream as long as the video, starting
 *    with it (the pre-roll cut keeps A/V in sync), and its codec string names
 *    mp4a.40.2 (what the viewer's Media Source needs);
 *  - audio off (the default), even with a source given: video only;
 *  - an audio input that cannot be opened does not stop recording: the
 *    encoder is retried without it, status and a warning say so, clips go on.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { createMediaPipeline } from '../../firmware/media/pipeline.js';
import type { MediaConfigInput, MediaEvent, MediaPipeline } from '../../firmware/media/pipeline.js';
import type { AudioSource } from '../../hw/audio/audio.js';
import { AlsaAudioSource } from '../../hw/audio/alsa-audio.js';
import { SimulatedTone } from '../../hw/audio/simulated-tone.js';
import { SimulatedCamera } from '../../hw/camera/simulated-camera.js';
import type { MotionSchedule } from '../../hw/camera/simulated-camera.js';
import { run } from '../../hw/os/run.js';
import { loadMlsProfile } from '../../protocol/mls-profile.js';
import {
  MemorySink,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
  tempDir,
} from '../../dev/fixtures/paired-hub.js';

t.setTimeout(300_000);

const config = (audio: boolean): MediaConfigInput => ({
  encoder: {
    width: 160,
    height: 120,
    fps: 10,
    bitrateKbps: 150,
    softwarePreset: 'ultrafast',
    gopSeconds: 1,
  },
  motion: { quietMs: 800 },
  clips: { preRollS: 2, postRollS: 1 },
  restart: { minMs: 200, maxMs: 2000 },
  audio: { enabled: audio, sampleRate: 48_000, channels: 1, bitrateKbps: 48 },
});

interface Stream {
  codec_type?: string;
  codec_name?: string;
  profile?: string;
  sample_rate?: string;
  channels?: number;
  start_time?: string;
  duration?: string;
}

async function probeStreams(bytes: Uint8Array): Promise<{ duration: number; streams: Stream[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-probe-'));
  const file = join(dir, 'clip.mp4');
  try {
    await writeFile(file, bytes);
    const r = await run(
      'ffprobe',
      [
        '-v',
        'error',
        '-show_entries',
        'format=duration:stream=codec_type,codec_name,profile,sample_rate,channels,start_time,duration',
        '-of',
        'json',
        file,
      ],
      { timeoutMs: 60_000 },
    );
    const j = JSON.parse(r.stdout.toString('utf8')) as {
      format?: { duration?: string };
      streams?: Stream[];
    };
    return { duration: Number(j.format?.duration ?? 'NaN'), streams: j.streams ?? [] };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function waitFor(p: MediaPipeline, pred: (e: MediaEvent) => boolean): Promise<MediaEvent> {
  return new Promise((resolve) => {
    const off = p.on((e) => {
      if (pred(e)) {
        off();
        resolve(e);
      }
    });
  });
}

const root = tempDir('vigil-media-audio-');
t.teardown(() => {
  rmSync(root, { recursive: true, force: true });
});
const profile = await loadMlsProfile();
const hub = await openHub(profile, join(root, 'hub'));
const paired = await pair({
  p: profile,
  hub,
  devicePsk: newDevicePsk(),
  phoneDir: join(root, 'phone'),
});
if (!paired.phone) throw new Error('pairing failed');
const phone = paired.phone;

function rig(
  schedule: MotionSchedule,
  audioOn: boolean,
  audio: AudioSource | undefined,
): { p: MediaPipeline; sink: MemorySink; logger: MemoryLogger } {
  const sink = new MemorySink();
  const logger = new MemoryLogger();
  const p = createMediaPipeline({
    camera: new SimulatedCamera({ width: 160, height: 120, fps: 10, schedule }),
    sealer: sealerFor(hub, sink),
    logger,
    config: config(audioOn),
    ...(audio ? { audio } : {}),
  });
  return { p, sink, logger };
}

async function firstClip(
  sink: MemorySink,
): Promise<{ plain: Buffer; codec: string; durationMs: number }> {
  const id = sink.order.find((i) => sink.items.get(i)?.kind === 'clip');
  if (id === undefined) throw new Error('no clip sealed');
  const opened = await phone.decryptItem(sink.bytes(id));
  return {
    plain: opened.plaintext,
    codec: opened.header.core.codec,
    durationMs: opened.trailer.durationMs,
  };
}

t.test(
  'simulated camera + tone: the decrypted clip has an AAC stream as long as the video',
  async (t) => {
    const { p, sink } = rig({ intervals: [[4, 6]] }, true, new SimulatedTone());
    await p.start();
    t.teardown(() => p.stop());
    const started = waitFor(p, (e) => e.type === 'clip-started');
    const thumbnailed = waitFor(p, (e) => e.type === 'thumbnail');
    const closed = await waitFor(p, (e) => e.type === 'clip-closed');
    await thumbnailed;
    const st = p.status();
    await p.stop();
    const s = await started;
    if (closed.type !== 'clip-closed' || s.type !== 'clip-started') throw new Error('events');
    t.match(st.audio, { enabled: true, source: 'simulated:tone', active: true });
    t.ok(s.preRollS >= 2, `the clip starts with ${s.preRollS} s of pre-roll`);

    const clip = await firstClip(sink);
    t.match(clip.codec, /^video\/mp4; codecs="avc1\.[0-9a-f]{6},mp4a\.40\.2"$/, clip.codec);
    const pr = await probeStreams(clip.plain);
    const video = pr.streams.find((x) => x.codec_type === 'video');
    const audio = pr.streams.find((x) => x.codec_type === 'audio');
    t.equal(video?.codec_name, 'h264');
    t.equal(audio?.codec_name, 'aac', 'an AAC stream');
    t.equal(audio?.profile, 'LC', 'AAC-LC');
    t.equal(audio?.sample_rate, '48000');
    t.equal(audio?.channels, 1);
    const vd = Number(video?.duration);
    const ad = Number(audio?.duration);
    t.ok(
      Math.abs(ad - vd) < 0.1,
      `audio ${ad.toFixed(3)} s as long as the video ${vd.toFixed(3)} s`,
    );
    t.ok(
      Math.abs(ad * 1000 - closed.durationMs) < 150,
      `audio ${ad.toFixed(3)} s ~ the sealed duration ${closed.durationMs} ms`,
    );
    t.ok(ad >= s.preRollS + 2, `audio covers pre-roll + the event (${ad.toFixed(2)} s)`);
    // Cut from a running stream at a GOP boundary: both tracks rebased by one instant.
    const skew = Math.abs(Number(audio?.start_time) - Number(video?.start_time));
    t.ok(skew < 0.05, `audio starts with the video (skew ${(skew * 1000).toFixed(1)} ms)`);
    // the thumbnailer reads the same two-track fragments
    const thumb = sink.order.find((i) => sink.items.get(i)?.kind === 'thumbnail');
    if (thumb === undefined) throw new Error('no thumbnail sealed');
    const jpeg = (await phone.decryptItem(sink.bytes(thumb))).plaintext;
    t.same([jpeg[0], jpeg[1]], [0xff, 0xd8], 'and a JPEG thumbnail is made from them');
  },
);

t.test('audio off (the default): video only, even with a source at hand', async (t) => {
  const { p, sink } = rig({ intervals: [[3, 4]] }, false, new SimulatedTone());
  await p.start();
  t.teardown(() => p.stop());
  await waitFor(p, (e) => e.type === 'clip-closed');
  t.match(p.status().audio, { enabled: false, active: false });
  await p.stop();
  const clip = await firstClip(sink);
  t.notMatch(clip.codec, /mp4a/);
  const pr = await probeStreams(clip.plain);
  t.same(
    pr.streams.map((x) => x.codec_type),
    ['video'],
  );
});

t.test('audio enabled without a source: start refuses with a clear reason', async (t) => {
  const { p } = rig({ intervals: [] }, true, undefined);
  await t.rejects(p.start(), /audio\.enabled is true but no audio source was given/);
  t.equal(p.status().state, 'failed');
});

t.test('an audio input that fails does not stop recording: video goes on without it', async (t) => {
  // No ALSA card by that name (and none at all on a CI host): ffmpeg cannot open the input.
  const { p, sink } = rig(
    { intervals: [[3, 5]] },
    true,
    new AlsaAudioSource({ device: 'hw:VigilNoSuchCard,0' }),
  );
  const warned = waitFor(p, (e) => e.type === 'warning' && /AUDIO CAPTURE FAILED/.test(e.message));
  await p.start();
  t.teardown(() => p.stop());
  await warned;
  await waitFor(p, (e) => e.type === 'clip-closed');
  const st = p.status();
  await p.stop();
  t.match(st.audio, { enabled: true, source: 'alsa:hw:VigilNoSuchCard,0', active: false });
  t.ok(st.audio.error, `status says why: ${st.audio.error ?? ''}`);
  t.ok(
    st.warnings.some((w) => w.includes('recording video without audio')),
    'a warning in status',
  );
  const clip = await firstClip(sink);
  const pr = await probeStreams(clip.plain);
  t.same(
    pr.streams.map((x) => x.codec_type),
    ['video'],
    'the clip is video only',
  );
});
