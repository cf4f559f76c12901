/**
 * Fragmented MP4 splitting. ffmpeg writes `ftyp moov` (the init segment) and
 * then one `moof mdat` pair per GOP (frag_keyframe). This parser cuts the byte
 * stream at box boundaries and reads just enough of each fragment (mfhd, tfdt,
 * trun/tfhd/trex durations, first-sample flags) to know where it sits in time
 * and that it starts on a keyframe. A clip is the init segment followed by any
 * run of consecutive fragments from the same encoder process.
 */
import { VigilError } from '../../base/errors.js';

export interface InitSegment {
  readonly bytes: Uint8Array;
  readonly timescale: number;
  /** RFC 6381 codec string, e.g. 'avc1.4d401f'. */
  readonly codec: string;
  readonly width: number;
  readonly height: number;
}

export interface Fragment {
  readonly bytes: Uint8Array;
  readonly sequence: number;
  /** Decode time of the first sample, seconds. */
  readonly startS: number;
  readonly durationS: number;
  readonly keyframe: boolean;
  /** Wall clock when the fragment was complete (ms). */
  readonly receivedAt: number;
  /** baseMediaDecodeTime in timescale ticks, and where its field sits in `bytes`. */
  readonly baseTime: number;
  readonly tfdt?: { readonly offset: number; readonly version: number };
}

export class Fmp4Error extends VigilError {
  constructor(message: string) {
    super('EFMP4', message);
    this.name = 'Fmp4Error';
  }
}

const MAX_BOX = 64 * 1024 * 1024;

interface Box {
  readonly type: string;
  readonly start: number; // offset of the box header within `buf`
  readonly body: number; // offset of the body
  readonly end: number;
}

function boxes(buf: Uint8Array, from: number, to: number): Box[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Box[] = [];
  let p = from;
  while (p + 8 <= to) {
    let size = dv.getUint32(p);
    const type = String.fromCharCode(
      buf[p + 4] ?? 0,
      buf[p + 5] ?? 0,
      buf[p + 6] ?? 0,
      buf[p + 7] ?? 0,
    );
    let body = p + 8;
    if (size === 1) {
      if (p + 16 > to) break;
      size = Number(dv.getBigUint64(p + 8));
      body = p + 16;
    } else if (size === 0) size = to - p;
    if (size < body - p || p + size > to) break;
    out.push({ type, start: p, body, end: p + size });
    p += size;
  }
  return out;
}

function child(buf: Uint8Array, parent: Box, type: string, skip = 0): Box | undefined {
  return boxes(buf, parent.body + skip, parent.end).find((b) => b.type === type);
}

function path(buf: Uint8Array, root: Box, types: readonly string[]): Box | undefined {
  let cur: Box | undefined = root;
  for (const t of types) {
    if (!cur) return undefined;
    // stsd has a 8-byte header (version/flags + entry count) before its children;
    // visual sample entries (avc1) have 78 bytes before theirs.
    const skip = cur.type === 'stsd' ? 8 : cur.type === 'avc1' || cur.type === 'avc3' ? 78 : 0;
    cur = child(buf, cur, t, skip);
  }
  return cur;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

export function parseInit(bytes: Uint8Array): InitSegment {
  const top = boxes(bytes, 0, bytes.length);
  const moov = top.find((b) => b.type === 'moov');
  if (!moov) throw new Fmp4Error('init segment has no moov box');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const trak = child(bytes, moov, 'trak');
  if (!trak) throw new Fmp4Error('moov has no trak');
  const mdhd = path(bytes, trak, ['mdia', 'mdhd']);
  if (!mdhd) throw new Fmp4Error('trak has no mdhd');
  const v = bytes[mdhd.body] ?? 0;
  const timescale = dv.getUint32(mdhd.body + (v === 1 ? 20 : 12));
  let codec = 'avc1';
  let width = 0;
  let height = 0;
  const entry = path(bytes, trak, ['mdia', 'minf', 'stbl', 'stsd']);
  if (entry) {
    const sample = boxes(bytes, entry.body + 8, entry.end)[0];
    if (sample) {
      codec = sample.type;
      // VisualSampleEntry: 6 reserved + 2 dref index + 16 predefined/reserved, then width, height.
      width = dv.getUint16(sample.body + 24);
      height = dv.getUint16(sample.body + 26);
      const avcC = child(bytes, sample, 'avcC', 78);
      if (avcC) {
        codec = `${sample.type}.${hex2(bytes[avcC.body + 1] ?? 0)}${hex2(bytes[avcC.body + 2] ?? 0)}${hex2(bytes[avcC.body + 3] ?? 0)}`;
      }
    }
  }
  if (!timescale) throw new Fmp4Error('mdhd timescale is zero');
  return { bytes, timescale, codec, width, height };
}

/** Default sample duration from moov/mvex/trex, if any. */
function trexDefaultDuration(init: Uint8Array): number {
  const moov = boxes(init, 0, init.length).find((b) => b.type === 'moov');
  if (!moov) return 0;
  const trex = path(init, moov, ['mvex', 'trex']);
  if (!trex) return 0;
  const dv = new DataView(init.buffer, init.byteOffset, init.byteLength);
  return dv.getUint32(trex.body + 12);
}

interface MoofInfo {
  sequence: number;
  baseTime: number;
  tfdt?: { offset: number; version: number };
  duration: number;
  keyframe: boolean;
}

function parseMoof(buf: Uint8Array, moof: Box, defaultDuration: number): MoofInfo {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const mfhd = child(buf, moof, 'mfhd');
  const sequence = mfhd ? dv.getUint32(mfhd.body + 4) : 0;
  const traf = child(buf, moof, 'traf');
  if (!traf) throw new Fmp4Error('moof has no traf');
  let baseTime = 0;
  let tfdtAt: { offset: number; version: number } | undefined;
  const tfdt = child(buf, traf, 'tfdt');
  if (tfdt) {
    const version = buf[tfdt.body] ?? 0;
    baseTime = version === 1 ? Number(dv.getBigUint64(tfdt.body + 4)) : dv.getUint32(tfdt.body + 4);
    tfdtAt = { offset: tfdt.body + 4, version };
  }
  let sampleDuration = defaultDuration;
  let defaultFlags: number | undefined;
  const tfhd = child(buf, traf, 'tfhd');
  if (tfhd) {
    const flags = dv.getUint32(tfhd.body) & 0xffffff;
    let p = tfhd.body + 8; // version/flags + track id
    if (flags & 0x1) p += 8; // base data offset
    if (flags & 0x2) p += 4; // sample description index
    if (flags & 0x8) {
      sampleDuration = dv.getUint32(p);
      p += 4;
    }
    if (flags & 0x10) p += 4; // default sample size
    if (flags & 0x20) defaultFlags = dv.getUint32(p);
  }
  let duration = 0;
  let keyframe = true;
  let first = true;
  for (const trun of boxes(buf, traf.body, traf.end).filter((b) => b.type === 'trun')) {
    const flags = dv.getUint32(trun.body) & 0xffffff;
    const count = dv.getUint32(trun.body + 4);
    let p = trun.body + 8;
    if (flags & 0x1) p += 4; // data offset
    let firstFlags: number | undefined;
    if (flags & 0x4) {
      firstFlags = dv.getUint32(p);
      p += 4;
    }
    for (let i = 0; i < count; i++) {
      let d = sampleDuration;
      if (flags & 0x100) {
        d = dv.getUint32(p);
        p += 4;
      }
      if (flags & 0x200) p += 4;
      let sflags: number | undefined;
      if (flags & 0x400) {
        sflags = dv.getUint32(p);
        p += 4;
      }
      if (flags & 0x800) p += 4;
      if (first) {
        const f = i === 0 && firstFlags !== undefined ? firstFlags : (sflags ?? defaultFlags);
        // sample_is_non_sync_sample is bit 16
        if (f !== undefined) keyframe = (f & 0x10000) === 0;
        first = false;
      }
      duration += d;
    }
  }
  return { sequence, baseTime, duration, keyframe, ...(tfdtAt ? { tfdt: tfdtAt } : {}) };
}

/**
 * A copy of the fragment with its decode time moved back by `offsetTicks`, so
 * a clip cut from a long-running stream starts at time zero (players and
 * ffprobe then report the clip's own duration).
 */
export function rebaseFragment(f: Fragment, offsetTicks: number): Uint8Array {
  if (!f.tfdt || offsetTicks === 0) return f.bytes;
  const out = new Uint8Array(f.bytes);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const t = Math.max(0, f.baseTime - offsetTicks);
  if (f.tfdt.version === 1) dv.setBigUint64(f.tfdt.offset, BigInt(t));
  else dv.setUint32(f.tfdt.offset, t);
  return out;
}

/**
 * Incremental splitter: push bytes as they arrive from the encoder, get the
 * init segment once and then whole fragments.
 */
export class Fmp4Splitter {
  #chunks: Uint8Array[] = [];
  #len = 0;
  #need: number | undefined;
  #initParts: Uint8Array[] = [];
  #init: InitSegment | undefined;
  #trexDuration = 0;
  #pendingMoof: Uint8Array | undefined;
  readonly #onInit: (init: InitSegment) => void;
  readonly #onFragment: (f: Fragment) => void;
  readonly #now: () => number;

  constructor(handlers: {
    onInit: (init: InitSegment) => void;
    onFragment: (f: Fragment) => void;
    now?: () => number;
  }) {
    this.#onInit = handlers.onInit;
    this.#onFragment = handlers.onFragment;
    this.#now = handlers.now ?? Date.now;
  }

  get init(): InitSegment | undefined {
    return this.#init;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#len += chunk.length;
    for (;;) {
      if (this.#need === undefined) {
        if (this.#len < 8) return;
        const head = this.#peek(Math.min(16, this.#len));
        const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
        let size = dv.getUint32(0);
        if (size === 1) {
          if (head.length < 16) return;
          size = Number(dv.getBigUint64(8));
        }
        if (size < 8 || size > MAX_BOX) throw new Fmp4Error(`implausible MP4 box size ${size}`);
        this.#need = size;
      }
      if (this.#len < this.#need) return;
      const box = this.#take(this.#need);
      this.#need = undefined;
      this.#box(String.fromCharCode(box[4] ?? 0, box[5] ?? 0, box[6] ?? 0, box[7] ?? 0), box);
    }
  }

  #peek(n: number): Uint8Array {
    const first = this.#chunks[0];
    if (first && first.length >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.#chunks) {
      const k = Math.min(c.length, n - o);
      out.set(c.subarray(0, k), o);
      o += k;
      if (o === n) break;
    }
    return out;
  }

  #take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0];
      if (!c) break;
      const k = Math.min(c.length, n - o);
      out.set(c.subarray(0, k), o);
      o += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#len -= n;
    return out;
  }

  /** Bytes held back waiting for the rest of a box (dropped if the encoder dies). */
  get pendingBytes(): number {
    return this.#len + (this.#pendingMoof?.length ?? 0);
  }

  #box(type: string, box: Uint8Array): void {
    if (this.#init === undefined) {
      this.#initParts.push(box);
      if (type === 'moov') {
        const total = this.#initParts.reduce((n, b) => n + b.length, 0);
        const bytes = new Uint8Array(total);
        let o = 0;
        for (const b of this.#initParts) {
          bytes.set(b, o);
          o += b.length;
        }
        this.#initParts = [];
        this.#init = parseInit(bytes);
        this.#trexDuration = trexDefaultDuration(bytes);
        this.#onInit(this.#init);
      }
      return;
    }
    if (type === 'moof') {
      this.#pendingMoof = box;
      return;
    }
    if (type === 'mdat' && this.#pendingMoof) {
      const moofBytes = this.#pendingMoof;
      this.#pendingMoof = undefined;
      const info = parseMoof(
        moofBytes,
        boxes(moofBytes, 0, moofBytes.length)[0] as Box,
        this.#trexDuration,
      );
      const bytes = new Uint8Array(moofBytes.length + box.length);
      bytes.set(moofBytes, 0);
      bytes.set(box, moofBytes.length);
      const ts = this.#init.timescale;
      this.#onFragment({
        bytes,
        sequence: info.sequence,
        startS: info.baseTime / ts,
        durationS: info.duration / ts,
        keyframe: info.keyframe,
        receivedAt: this.#now(),
        baseTime: info.baseTime,
        ...(info.tfdt ? { tfdt: info.tfdt } : {}),
      });
    }
    // mfra, free, styp, sidx: not needed for clips.
  }
}
