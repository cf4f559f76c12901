import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FMP4_MOVFLAGS, audioOutputArgs } from '../../../hw/encoder/ffmpeg-encoder.js';
import { run } from '../../../hw/os/run.js';
import {
  Fmp4Error,
  clipOrigin,
  Fmp4Splitter,
  parseInit,
  rebaseFragment,
} from '../../../firmware/media/fmp4.js';
import type { Fragment, InitSegment } from '../../../firmware/media/fmp4.js';
import { makeFmp4, probe } from './fixtures.js';

t.test(
  'splits a real ffmpeg fMP4 into init + one fragment per GOP, whatever the chunking',
  async (t) => {
    const bytes = await makeFmp4({ seconds: 3, fps: 10, gop: 10 });
    for (const chunk of [1, 7, 4096, bytes.length]) {
      const inits: InitSegment[] = [];
      const frags: Fragment[] = [];
      const s = new Fmp4Splitter({
        onInit: (i) => inits.push(i),
        onFragment: (f) => frags.push(f),
        now: () => 42,
      });
      for (let p = 0; p < bytes.length; p += chunk) s.push(bytes.subarray(p, p + chunk));
      t.equal(inits.length, 1, `chunk ${chunk}: one init`);
      t.match(inits[0]?.codec, /^avc1\.[0-9a-f]{6}$/);
      t.equal(inits[0]?.width, 160);
      t.equal(inits[0]?.height, 120);
      t.equal(frags.length, 3, `chunk ${chunk}: three 1 s fragments`);
      t.same(
        frags.map((f) => f.sequence),
        [1, 2, 3],
      );
      t.ok(
        frags.every((f) => f.keyframe),
        'each starts on a keyframe',
      );
      t.same(
        frags.map((f) => Math.round(f.durationS * 10) / 10),
        [1, 1, 1],
      );
      t.same(
        frags.map((f) => Math.round(f.startS * 10) / 10),
        [0, 1, 2],
      );
      t.equal(frags[0]?.receivedAt, 42);
      t.equal(s.pendingBytes, 0, 'mfra consumed, nothing left over');
      t.equal(s.init, inits[0]);
      // each fragment is its moof + mdat exactly as the encoder wrote them, however the
      // pipe cut them (the mdat is copied into the fragment as its chunks arrive)
      const whole = Buffer.concat([
        inits[0]?.bytes ?? new Uint8Array(),
        ...frags.map((f) => f.bytes),
      ]);
      t.ok(whole.equals(bytes.subarray(0, whole.length)), `chunk ${chunk}: the file's bytes`);
    }
  },
);

t.test('init + any run of consecutive fragments is a playable file', async (t) => {
  const bytes = await makeFmp4({ seconds: 4, fps: 10, gop: 10 });
  let init: InitSegment | undefined;
  const frags: Fragment[] = [];
  new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => frags.push(f) }).push(bytes);
  if (!init) throw new Error('no init');
  const cut = Buffer.concat([init.bytes, ...frags.slice(1, 3).map((f) => f.bytes)]);
  const p = await probe(cut);
  t.equal(p.codec, 'h264');
  t.equal(p.frames, 20);
  t.ok(
    Math.abs(p.duration - 3) < 0.15,
    `without rebasing the clip seems to start at 0: ${p.duration}`,
  );
  const base = frags[1]?.baseTime ?? 0;
  t.ok(base > 0);
  const rebased = Buffer.concat([
    init.bytes,
    ...frags.slice(1, 3).map((f) => rebaseFragment(f, base)),
  ]);
  const q = await probe(rebased);
  t.equal(q.frames, 20);
  t.ok(Math.abs(q.duration - 2) < 0.15, `rebased duration ${q.duration} ~ 2 s`);
  t.equal(rebaseFragment(frags[0]!, 0), frags[0]?.bytes, 'no offset: no copy');
});

t.test('a partial box is held back (encoder killed mid-fragment)', async (t) => {
  const bytes = await makeFmp4({ seconds: 2, fps: 10, gop: 10 });
  const frags: Fragment[] = [];
  let init: InitSegment | undefined;
  const s = new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => frags.push(f) });
  const cut = bytes.length - 2000;
  for (let p = 0; p < cut; p += 4096) s.push(bytes.subarray(p, Math.min(p + 4096, cut)));
  t.equal(frags.length, 1, 'only the complete fragment');
  t.equal(
    s.pendingBytes,
    cut - (init?.bytes.length ?? 0) - (frags[0]?.bytes.length ?? 0),
    'everything after the first fragment is held back, counted once',
  );
});

t.test('garbage is refused', async (t) => {
  const s = new Fmp4Splitter({ onInit: () => undefined, onFragment: () => undefined });
  t.throws(() => {
    s.push(Buffer.from([0, 0, 0, 3, 1, 2, 3, 4]));
  }, Fmp4Error);
  t.throws(() => parseInit(Buffer.from([0, 0, 0, 8, 0x66, 0x74, 0x79, 0x70])), /no moov/);
  const big = Buffer.alloc(16);
  big.writeUInt32BE(1, 0);
  big.write('mdat', 4, 'latin1');
  big.writeBigUInt64BE(2n ** 40n, 8);
  t.throws(() => {
    new Fmp4Splitter({ onInit: () => undefined, onFragment: () => undefined }).push(big);
  }, /implausible/);
});

/** Video + a 48 kHz AAC tone, as the encoder writes it with audio on (hw/encoder/ffmpeg-encoder.ts). */
async function makeAvFmp4(seconds: number): Promise<Buffer> {
  const r = await run(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=s=160x120:r=10',
      '-f',
      'lavfi',
      '-i',
      'sine=frequency=440:sample_rate=48000',
      '-t',
      String(seconds),
      '-map',
      '0:v',
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-g',
      '10',
      '-sc_threshold',
      '0',
      '-bf',
      '0',
      '-pix_fmt',
      'yuv420p',
      ...audioOutputArgs({ input: [], sampleRate: 48_000, channels: 1, bitrateKbps: 48 }),
      '-f',
      'mp4',
      '-movflags',
      FMP4_MOVFLAGS,
      'pipe:1',
    ],
    { timeoutMs: 60_000 },
  );
  return r.stdout;
}

async function probeAv(bytes: Uint8Array): Promise<{ type: string; start: number; dur: number }[]> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-av-'));
  try {
    await writeFile(join(dir, 'av.mp4'), bytes);
    const r = await run(
      'ffprobe',
      [
        '-v',
        'error',
        '-show_entries',
        'stream=codec_type,start_time,duration',
        '-of',
        'json',
        join(dir, 'av.mp4'),
      ],
      { timeoutMs: 60_000 },
    );
    const j = JSON.parse(r.stdout.toString('utf8')) as {
      streams: { codec_type: string; start_time: string; duration: string }[];
    };
    return j.streams.map((s) => ({
      type: s.codec_type,
      start: Number(s.start_time),
      dur: Number(s.duration),
    }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

t.test('video + AAC: both tracks parsed, codec string for Media Source', async (t) => {
  const bytes = await makeAvFmp4(3);
  let init: InitSegment | undefined;
  const frags: Fragment[] = [];
  new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => frags.push(f) }).push(bytes);
  if (!init) throw new Error('no init');
  t.match(init.codec, /^avc1\.[0-9a-f]{6},mp4a\.40\.2$/, init.codec);
  t.equal(init.hasAudio, true);
  t.same(
    init.tracks.map((x) => [x.kind, x.timescale]),
    [
      ['video', init.timescale],
      ['audio', 48_000],
    ],
  );
  t.equal(init.width, 160, 'size from the video track');
  t.equal(frags.length, 3, 'one fragment per GOP, as without audio');
  t.same(
    frags.map((f) => Math.round(f.durationS * 10) / 10),
    [1, 1, 1],
    'fragment times are the video track’s',
  );
  t.ok(
    frags.every((f) => f.keyframe && f.tracks?.length === 2),
    'each fragment: a keyframe, both tracks',
  );
  t.equal(frags[1]?.tracks?.[0]?.baseTime, frags[1]?.baseTime, 'tracks[0] is the video');
  t.equal(frags[1]?.tracks?.[1]?.timescale, 48_000);
  const video = await makeFmp4({ seconds: 1 });
  let plain: InitSegment | undefined;
  new Fmp4Splitter({ onInit: (i) => (plain = i), onFragment: () => undefined }).push(video);
  t.equal(plain?.hasAudio, false, 'a video-only stream says so');
  t.match(plain?.codec, /^avc1\.[0-9a-f]{6}$/);
});

t.test('a clip cut from the middle keeps audio and video together', async (t) => {
  const bytes = await makeAvFmp4(4);
  let init: InitSegment | undefined;
  const frags: Fragment[] = [];
  new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => frags.push(f) }).push(bytes);
  if (!init) throw new Error('no init');
  const first = frags[1]!;
  const [v, a] = first.tracks ?? [];
  if (!v || !a) throw new Error('two tracks expected');
  // The encoder's own offset between the tracks at this cut (an AAC frame or so).
  const gapS = a.baseTime / a.timescale - v.baseTime / v.timescale;
  const origin = clipOrigin(first);
  t.equal(origin, Math.min(v.baseTime, Math.floor((a.baseTime * v.timescale) / a.timescale)));
  const clip = Buffer.concat([
    init.bytes,
    ...frags.slice(1, 3).map((f) => rebaseFragment(f, origin)),
  ]);
  const s = await probeAv(clip);
  const sv = s.find((x) => x.type === 'video');
  const sa = s.find((x) => x.type === 'audio');
  if (!sv || !sa) throw new Error('both streams expected');
  t.ok(Math.min(sv.start, sa.start) < 0.001, 'the clip starts at zero');
  t.ok(
    Math.abs(sa.start - sv.start - gapS) < 0.001,
    `the A/V offset is the encoder's (${(gapS * 1000).toFixed(1)} ms), not reset`,
  );
  t.ok(Math.abs(sa.dur - sv.dur) < 0.05, `audio ${sa.dur} s ~ video ${sv.dur} s`);
  // Rebasing each track to its own zero would shift the audio by that offset: one origin for all.
  t.ok(Math.abs(gapS) > 0, 'the tracks do not start together in the stream');
  t.equal(clipOrigin(frags[0]!), 0);
  const single: Fragment = { ...first, tracks: [v] };
  t.equal(clipOrigin(single), first.baseTime, 'one track: its own start');
});
