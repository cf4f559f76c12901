import t from 'tap';
import {
  Fmp4Error,
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
  const s = new Fmp4Splitter({ onInit: () => undefined, onFragment: (f) => frags.push(f) });
  s.push(bytes.subarray(0, bytes.length - 2000));
  t.equal(frags.length, 1, 'only the complete fragment');
  t.ok(s.pendingBytes > 0);
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
