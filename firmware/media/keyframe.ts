/**
 * The detector's frames come from the recording itself (issue #21): while a
 * motion event is being checked, the first picture of each new fMP4 fragment
 * (one fragment per GOP, so a keyframe) is cut out of the fragment and handed
 * to a keyframe decoder (hw/encoder/frame-decoder.ts) as an H.264 Annex B
 * access unit. At rest nothing here runs: the encoder's side stream stays the
 * motion detector's small one.
 *
 * Pure: bytes in, bytes (or `undefined` for what it cannot use) out.
 */
import type { Box } from './fmp4.js';
import { boxes, child, path } from './fmp4.js';

/** What the init segment says about the H.264 track. */
export interface AvcTrack {
  readonly trackId: number;
  /** Bytes of each NAL unit's length prefix in the samples (1, 2 or 4). */
  readonly lengthSize: number;
  /** SPS and PPS NAL units from the avcC box (empty for avc3: they travel in band). */
  readonly parameterSets: readonly Uint8Array[];
}

const START = Uint8Array.of(0, 0, 0, 1);
/** Access unit delimiter (nal_unit_type 9, primary_pic_type 7: any). */
const AUD = Uint8Array.of(0, 0, 0, 1, 0x09, 0xf0);

function dataView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** The H.264 video track of an init segment, or undefined (no moov, no avc1/avc3 entry). */
export function avcTrackOf(init: Uint8Array): AvcTrack | undefined {
  const dv = dataView(init);
  const moov = boxes(init, 0, init.length).find((b) => b.type === 'moov');
  if (!moov) return undefined;
  for (const trak of boxes(init, moov.body, moov.end).filter((b) => b.type === 'trak')) {
    const stsd = path(init, trak, ['mdia', 'minf', 'stbl', 'stsd']);
    const entry = stsd ? boxes(init, stsd.body + 8, stsd.end)[0] : undefined;
    if (entry?.type !== 'avc1' && entry?.type !== 'avc3') continue;
    const tkhd = child(init, trak, 'tkhd');
    if (!tkhd) return undefined;
    const trackId = dv.getUint32(tkhd.body + ((init[tkhd.body] ?? 0) === 1 ? 20 : 12));
    const avcC = child(init, entry, 'avcC', 78); // after the VisualSampleEntry fields
    if (!avcC || avcC.end - avcC.body < 7) return undefined;
    const lengthSize = ((init[avcC.body + 4] ?? 0) & 0x3) + 1;
    const parameterSets: Uint8Array[] = [];
    let p = avcC.body + 5;
    for (const mask of [0x1f, 0xff]) {
      // the SPS count (low 5 bits), then the PPS count (a whole byte)
      const n = (init[p] ?? 0) & mask;
      p++;
      for (let i = 0; i < n; i++) {
        if (p + 2 > avcC.end) return undefined;
        const len = dv.getUint16(p);
        if (p + 2 + len > avcC.end) return undefined;
        parameterSets.push(init.subarray(p + 2, p + 2 + len));
        p += 2 + len;
      }
    }
    return { trackId, lengthSize, parameterSets };
  }
  return undefined;
}

/** Where the first sample of `trackId` lies in a fragment (moof + mdat). */
function firstSample(
  frag: Uint8Array,
  trackId: number,
): { at: number; size: number; sync: boolean } | undefined {
  const dv = dataView(frag);
  const moof: Box | undefined = boxes(frag, 0, frag.length).find((b) => b.type === 'moof');
  if (!moof) return undefined;
  for (const traf of boxes(frag, moof.body, moof.end).filter((b) => b.type === 'traf')) {
    const tfhd = child(frag, traf, 'tfhd');
    if (!tfhd || dv.getUint32(tfhd.body + 4) !== trackId) continue;
    const tf = dv.getUint32(tfhd.body) & 0xffffff;
    if (tf & 0x1) return undefined; // an absolute base offset: not in a self-contained fragment
    let p = tfhd.body + 8;
    if (tf & 0x2) p += 4; // sample description index
    if (tf & 0x8) p += 4; // default duration
    let size: number | undefined;
    if (tf & 0x10) {
      size = dv.getUint32(p);
      p += 4;
    }
    let flags: number | undefined = tf & 0x20 ? dv.getUint32(p) : undefined;
    const trun = child(frag, traf, 'trun');
    if (!trun) return undefined;
    const rf = dv.getUint32(trun.body) & 0xffffff;
    if (dv.getUint32(trun.body + 4) === 0 || !(rf & 0x1)) return undefined;
    let q = trun.body + 8;
    const dataOffset = dv.getInt32(q);
    q += 4;
    if (rf & 0x4) {
      flags = dv.getUint32(q);
      q += 4;
    }
    if (rf & 0x100) q += 4; // duration
    if (rf & 0x200) size = dv.getUint32(q);
    // The base is the moof's first byte (default-base-is-moof, or the first traf).
    const at = moof.start + dataOffset;
    if (size === undefined || at < moof.end || at + size > frag.length) return undefined;
    // sample_is_non_sync_sample is bit 16; no flags at all: trust the fragmenter (one per GOP).
    return { at, size, sync: flags === undefined || (flags & 0x10000) === 0 };
  }
  return undefined;
}

/**
 * The fragment's first video picture as one Annex B access unit — SPS and PPS,
 * the picture's NAL units, then an access unit delimiter so that a streaming
 * parser sees the picture end at once instead of waiting for the next one —
 * or undefined when it is not a keyframe or the bytes do not add up.
 */
export function keyframeAnnexB(track: AvcTrack, frag: Uint8Array): Uint8Array | undefined {
  const s = firstSample(frag, track.trackId);
  if (!s?.sync) return undefined;
  const parts: Uint8Array[] = [];
  for (const ps of track.parameterSets) parts.push(START, ps);
  const n = track.lengthSize;
  const end = s.at + s.size;
  let p = s.at;
  while (p + n <= end) {
    let len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (frag[p + i] ?? 0);
    p += n;
    if (len === 0 || p + len > end) return undefined;
    const nal = frag.subarray(p, p + len);
    if (((nal[0] ?? 0) & 0x1f) !== 9) parts.push(START, nal); // its own delimiters go
    p += len;
  }
  if (p !== end || parts.length === 0) return undefined;
  parts.push(AUD);
  let total = 0;
  for (const x of parts) total += x.length;
  const out = new Uint8Array(total);
  let o = 0;
  for (const x of parts) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}
