import t from 'tap';
import type { Fragment, InitSegment } from '../../../firmware/media/fmp4.js';
import { Fmp4Splitter } from '../../../firmware/media/fmp4.js';
import { avcTrackOf, keyframeAnnexB } from '../../../firmware/media/keyframe.js';
import { makeFmp4 } from './fixtures.js';

function split(bytes: Uint8Array): { init: InitSegment; fragments: Fragment[] } {
  let init: InitSegment | undefined;
  const fragments: Fragment[] = [];
  const s = new Fmp4Splitter({
    onInit: (i) => (init = i),
    onFragment: (f) => fragments.push(f),
  });
  s.push(bytes);
  if (!init) throw new Error('no init segment');
  return { init, fragments };
}

/** NAL unit types of an Annex B stream (4-byte start codes, as keyframeAnnexB writes them). */
function nalTypes(au: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 < au.length; i++)
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 0 && au[i + 3] === 1)
      out.push((au[i + 4] ?? 0) & 0x1f);
  return out;
}

t.test('the H.264 track of an init segment: id, length size, SPS and PPS', async (t) => {
  for (const audio of [false, true]) {
    const { init } = split(await makeFmp4({ seconds: 1, fps: 10, gop: 5, audio }));
    t.equal(init.hasAudio, audio);
    const avc = avcTrackOf(init.bytes);
    if (!avc) throw new Error('no avc track');
    t.equal(
      avc.trackId,
      init.tracks.find((x) => x.kind === 'video')?.id,
      `video track (audio ${audio})`,
    );
    t.equal(avc.lengthSize, 4);
    t.same(
      avc.parameterSets.map((p) => (p[0] ?? 0) & 0x1f),
      [7, 8],
      'one SPS, one PPS',
    );
  }
  t.equal(avcTrackOf(new Uint8Array(16)), undefined, 'no moov: undefined');
});

t.test('each fragment gives its keyframe as one Annex B access unit', async (t) => {
  for (const audio of [false, true]) {
    const { init, fragments } = split(await makeFmp4({ seconds: 2, fps: 10, gop: 5, audio }));
    const avc = avcTrackOf(init.bytes);
    if (!avc) throw new Error('no avc track');
    t.equal(fragments.length, 4, 'one fragment per GOP');
    for (const f of fragments) {
      const au = keyframeAnnexB(avc, f.bytes);
      if (!au) throw new Error('no keyframe');
      const types = nalTypes(au);
      t.same(types.slice(0, 2), [7, 8], 'SPS and PPS first');
      t.ok(types.includes(5), 'an IDR slice');
      t.notOk(types.includes(1), 'no other picture');
      t.equal(types.at(-1), 9, 'an access unit delimiter last');
      t.ok(au.length < f.bytes.length / 2, 'one picture of a 5-picture GOP');
    }
  }
});

t.test('what is not a keyframe or does not add up gives undefined', async (t) => {
  const { init, fragments } = split(await makeFmp4({ seconds: 1, fps: 10, gop: 10 }));
  const avc = avcTrackOf(init.bytes);
  const f = fragments[0];
  if (!avc || !f) throw new Error('no fragment');
  t.ok(keyframeAnnexB(avc, f.bytes), 'the real one works');
  t.equal(keyframeAnnexB({ ...avc, trackId: 99 }, f.bytes), undefined, 'another track');
  const mdat = Buffer.from(f.bytes).indexOf('mdat');
  t.equal(keyframeAnnexB(avc, f.bytes.subarray(0, mdat + 100)), undefined, 'keyframe cut short');
  t.equal(keyframeAnnexB(avc, new Uint8Array(32)), undefined, 'no moof');
  t.equal(
    keyframeAnnexB({ ...avc, lengthSize: 2 }, f.bytes),
    undefined,
    'NAL lengths do not add up',
  );
  // Mark the first sample non-sync (trun first-sample-flags or tfhd default flags).
  const nonSync = Uint8Array.from(f.bytes);
  const dv = new DataView(nonSync.buffer);
  const at = Buffer.from(nonSync).indexOf('trun');
  const flags = dv.getUint32(at + 4) & 0xffffff;
  if (flags & 0x4) dv.setUint32(at + 12, dv.getUint32(at + 12) | 0x10000);
  else {
    const tfhd = Buffer.from(nonSync).indexOf('tfhd');
    t.ok(dv.getUint32(tfhd + 4) & 0x20, 'default flags in tfhd');
    const off = 4 + 4 + 4 + (dv.getUint32(tfhd + 4) & 0x8 ? 4 : 0) + 4;
    dv.setUint32(tfhd + off, dv.getUint32(tfhd + off) | 0x10000);
  }
  t.equal(keyframeAnnexB(avc, nonSync), undefined, 'not a sync sample');
});
