/**
 * Fragmented MP4 splitting. ffmpeg writes `ftyp moov` (the init segment) and
 * then one `moof mdat` pair per GOP (frag_keyframe). This parser cuts the byte
 * stream at box boundaries and reads just enough of each fragment (mfhd, tfdt,
 * trun/tfhd/trex durations, first-sample flags) to know where it sits in time
 * and that it starts on a keyframe. A clip is the init segment followed by any
 * run of consecutive fragments from the same encoder process.
 */
import { VigilError } from '../../base/errors.js';

/** One track of the init segment (the video, and the audio when it is on). */
export interface TrackInfo {
  readonly id: number;
  readonly kind: 'video' | 'audio' | 'other';
  readonly timescale: number;
  /** RFC 6381 codec of this track, e.g. 'avc1.4d401f' or 'mp4a.40.2'. */
  readonly codec: string;
}

export interface InitSegment {
  readonly bytes: Uint8Array;
  /** The video track's timescale (fragment times and durations are the video's). */
  readonly timescale: number;
  /** RFC 6381 codecs of every track, in track order, e.g. 'avc1.4d401f,mp4a.40.2'. */
  readonly codec: string;
  readonly width: number;
  readonly height: number;
  readonly tracks: readonly TrackInfo[];
  /** An audio track is muxed in (AAC next to the H.264). */
  readonly hasAudio: boolean;
}

/** Where one track's decode time sits in a fragment. */
export interface TrackTime {
  readonly trackId: number;
  readonly timescale: number;
  /** baseMediaDecodeTime in this track's ticks. */
  readonly baseTime: number;
  readonly tfdt?: { readonly offset: number; readonly version: number };
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
  /** The video track's baseMediaDecodeTime in its ticks, and where its field sits in `bytes`. */
  readonly baseTime: number;
  readonly tfdt?: { readonly offset: number; readonly version: number };
  /**
   * Every track's decode time (video first as written, then audio). Empty for
   * fragments built by hand in tests: rebasing then moves the video field only.
   */
  readonly tracks?: readonly TrackTime[];
}

export class Fmp4Error extends VigilError {
  constructor(message: string) {
    super('EFMP4', message);
    this.name = 'Fmp4Error';
  }
}

const MAX_BOX = 64 * 1024 * 1024;

/** One ISO BMFF box within a buffer (exported for keyframe.ts). */
export interface Box {
  readonly type: string;
  readonly start: number; // offset of the box header within `buf`
  readonly body: number; // offset of the body
  readonly end: number;
}

export function boxes(buf: Uint8Array, from: number, to: number): Box[] {
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

export function child(buf: Uint8Array, parent: Box, type: string, skip = 0): Box | undefined {
  return boxes(buf, parent.body + skip, parent.end).find((b) => b.type === type);
}

/** Bytes before a sample entry's child boxes (the entry's own fields). */
function sampleEntrySkip(buf: Uint8Array, entry: Box): number {
  switch (entry.type) {
    case 'avc1':
    case 'avc3':
      return 78; // VisualSampleEntry
    case 'mp4a': {
      // AudioSampleEntry is 28 bytes; QuickTime sound descriptions v1/v2 are longer.
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      const version = entry.body + 10 <= entry.end ? dv.getUint16(entry.body + 8) : 0;
      return version === 1 ? 44 : version === 2 ? 64 : 28;
    }
    default:
      return 0;
  }
}

export function path(buf: Uint8Array, root: Box, types: readonly string[]): Box | undefined {
  let cur: Box | undefined = root;
  for (const t of types) {
    if (!cur) return undefined;
    // stsd has a 8-byte header (version/flags + entry count) before its children.
    const skip = cur.type === 'stsd' ? 8 : sampleEntrySkip(buf, cur);
    cur = child(buf, cur, t, skip);
  }
  return cur;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/**
 * RFC 6381 codec of an MPEG-4 audio sample entry from its esds descriptors:
 * 'mp4a.40.2' for AAC-LC (object type indication 0x40, audio object type 2).
 */
function mp4aCodec(buf: Uint8Array, esds: Box): string {
  let p = esds.body + 4; // version/flags
  const byte = (): number => (p < esds.end ? (buf[p++] ?? 0) : -1);
  const length = (): number => {
    let n = 0;
    for (let i = 0; i < 4; i++) {
      const b = byte();
      if (b < 0) return -1;
      n = (n << 7) | (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
    return n;
  };
  if (byte() !== 0x03 || length() < 0) return 'mp4a'; // ES_Descriptor
  p += 2; // ES_ID
  const flags = byte();
  if (flags & 0x80) p += 2; // dependsOn_ES_ID
  if (flags & 0x40) p += 1 + (buf[p] ?? 0); // URL
  if (flags & 0x20) p += 2; // OCR_ES_Id
  if (byte() !== 0x04 || length() < 0) return 'mp4a'; // DecoderConfigDescriptor
  const oti = byte();
  if (oti < 0) return 'mp4a';
  p += 12; // streamType, bufferSizeDB, maxBitrate, avgBitrate
  if (oti !== 0x40) return `mp4a.${hex2(oti)}`;
  if (byte() !== 0x05 || length() < 1) return 'mp4a.40'; // DecoderSpecificInfo
  const a = byte();
  const b = byte();
  let aot = a >> 3;
  if (aot === 31) aot = 32 + (((a & 0x7) << 3) | (b >> 5));
  return `mp4a.40.${aot}`;
}

function fourccAt(buf: Uint8Array, at: number): string {
  return String.fromCharCode(buf[at] ?? 0, buf[at + 1] ?? 0, buf[at + 2] ?? 0, buf[at + 3] ?? 0);
}

interface ParsedTrack extends TrackInfo {
  readonly width: number;
  readonly height: number;
}

function parseTrak(bytes: Uint8Array, trak: Box): ParsedTrack {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tkhd = child(bytes, trak, 'tkhd');
  const id = tkhd ? dv.getUint32(tkhd.body + ((bytes[tkhd.body] ?? 0) === 1 ? 20 : 12)) : 0;
  const mdhd = path(bytes, trak, ['mdia', 'mdhd']);
  if (!mdhd) throw new Fmp4Error('trak has no mdhd');
  const v = bytes[mdhd.body] ?? 0;
  const timescale = dv.getUint32(mdhd.body + (v === 1 ? 20 : 12));
  if (!timescale) throw new Fmp4Error('mdhd timescale is zero');
  const hdlr = path(bytes, trak, ['mdia', 'hdlr']);
  const handler = hdlr ? fourccAt(bytes, hdlr.body + 8) : '';
  const kind = handler === 'vide' ? 'video' : handler === 'soun' ? 'audio' : 'other';
  let codec = kind === 'audio' ? 'mp4a' : 'avc1';
  let width = 0;
  let height = 0;
  const stsd = path(bytes, trak, ['mdia', 'minf', 'stbl', 'stsd']);
  const sample = stsd ? boxes(bytes, stsd.body + 8, stsd.end)[0] : undefined;
  if (sample) {
    codec = sample.type;
    const skip = sampleEntrySkip(bytes, sample);
    if (kind === 'video' || sample.type === 'avc1' || sample.type === 'avc3') {
      // VisualSampleEntry: 6 reserved + 2 dref index + 16 predefined/reserved, then width, height.
      width = dv.getUint16(sample.body + 24);
      height = dv.getUint16(sample.body + 26);
    }
    const avcC = child(bytes, sample, 'avcC', skip);
    if (avcC) {
      codec = `${sample.type}.${hex2(bytes[avcC.body + 1] ?? 0)}${hex2(bytes[avcC.body + 2] ?? 0)}${hex2(bytes[avcC.body + 3] ?? 0)}`;
    }
    const esds = sample.type === 'mp4a' ? child(bytes, sample, 'esds', skip) : undefined;
    if (esds) codec = mp4aCodec(bytes, esds);
  }
  return { id, kind, timescale, codec, width, height };
}

export function parseInit(bytes: Uint8Array): InitSegment {
  const top = boxes(bytes, 0, bytes.length);
  const moov = top.find((b) => b.type === 'moov');
  if (!moov) throw new Fmp4Error('init segment has no moov box');
  const traks = boxes(bytes, moov.body, moov.end).filter((b) => b.type === 'trak');
  const tracks = traks.map((t) => parseTrak(bytes, t));
  const video = tracks.find((t) => t.kind === 'video') ?? tracks[0];
  if (!video) throw new Fmp4Error('moov has no trak');
  return {
    bytes,
    timescale: video.timescale,
    codec: tracks.map((t) => t.codec).join(','),
    width: video.width,
    height: video.height,
    tracks: tracks.map(({ id, kind, timescale, codec }) => ({ id, kind, timescale, codec })),
    hasAudio: tracks.some((t) => t.kind === 'audio'),
  };
}

/** Default sample duration per track id, from moov/mvex/trex. */
function trexDefaultDurations(init: Uint8Array): Map<number, number> {
  const out = new Map<number, number>();
  const moov = boxes(init, 0, init.length).find((b) => b.type === 'moov');
  const mvex = moov ? child(init, moov, 'mvex') : undefined;
  if (!mvex) return out;
  const dv = new DataView(init.buffer, init.byteOffset, init.byteLength);
  for (const trex of boxes(init, mvex.body, mvex.end).filter((b) => b.type === 'trex'))
    out.set(dv.getUint32(trex.body + 4), dv.getUint32(trex.body + 12));
  return out;
}

interface TrafInfo {
  trackId: number;
  baseTime: number;
  tfdt?: { offset: number; version: number };
  duration: number;
  keyframe: boolean;
}

function parseTraf(buf: Uint8Array, traf: Box, defaults: ReadonlyMap<number, number>): TrafInfo {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let baseTime = 0;
  let tfdtAt: { offset: number; version: number } | undefined;
  const tfdt = child(buf, traf, 'tfdt');
  if (tfdt) {
    const version = buf[tfdt.body] ?? 0;
    baseTime = version === 1 ? Number(dv.getBigUint64(tfdt.body + 4)) : dv.getUint32(tfdt.body + 4);
    tfdtAt = { offset: tfdt.body + 4, version };
  }
  let trackId = 0;
  let sampleDuration: number | undefined;
  let defaultFlags: number | undefined;
  const tfhd = child(buf, traf, 'tfhd');
  if (tfhd) {
    const flags = dv.getUint32(tfhd.body) & 0xffffff;
    trackId = dv.getUint32(tfhd.body + 4);
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
  sampleDuration ??= defaults.get(trackId) ?? defaults.values().next().value ?? 0;
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
  return { trackId, baseTime, duration, keyframe, ...(tfdtAt ? { tfdt: tfdtAt } : {}) };
}

interface MoofInfo {
  sequence: number;
  trafs: TrafInfo[];
}

function parseMoof(buf: Uint8Array, moof: Box, defaults: ReadonlyMap<number, number>): MoofInfo {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const mfhd = child(buf, moof, 'mfhd');
  const sequence = mfhd ? dv.getUint32(mfhd.body + 4) : 0;
  const trafs = boxes(buf, moof.body, moof.end)
    .filter((b) => b.type === 'traf')
    .map((traf) => parseTraf(buf, traf, defaults));
  if (trafs.length === 0) throw new Fmp4Error('moof has no traf');
  return { sequence, trafs };
}

/** `ticks` of a track with timescale `from`, in timescale `to`, rounded down (exact for any size). */
function convertTicks(ticks: number, from: number, to: number): number {
  if (from === to) return ticks;
  return Number((BigInt(ticks) * BigInt(to)) / BigInt(from));
}

/**
 * Where a clip that starts with fragment `f` puts time zero, in the ticks of
 * `f`'s main (video) track: the earliest start among its tracks. Every track
 * of every later fragment is moved back by this same instant, so the gap the
 * encoder left between audio and video (an AAC frame or so) is kept and the
 * clip stays in sync.
 */
export function clipOrigin(f: Fragment): number {
  const tracks = f.tracks ?? [];
  const main = tracks[0];
  if (!main || tracks.length < 2) return f.baseTime;
  let origin = f.baseTime;
  for (const t of tracks.slice(1))
    origin = Math.min(origin, convertTicks(t.baseTime, t.timescale, main.timescale));
  return origin;
}

/**
 * A copy of the fragment with its decode times moved back by `offsetTicks`
 * (in the main track's ticks; the other tracks move back by the same instant),
 * so a clip cut from a long-running stream starts at time zero (players and
 * ffprobe then report the clip's own duration).
 */
export function rebaseFragment(f: Fragment, offsetTicks: number): Uint8Array {
  if (offsetTicks === 0) return f.bytes;
  const main = f.tracks?.[0];
  const tracks: readonly TrackTime[] =
    f.tracks && f.tracks.length > 0
      ? f.tracks
      : f.tfdt
        ? [{ trackId: 0, timescale: 1, baseTime: f.baseTime, tfdt: f.tfdt }]
        : [];
  if (!tracks.some((t) => t.tfdt)) return f.bytes;
  const out = new Uint8Array(f.bytes);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (const tr of tracks) {
    if (!tr.tfdt) continue;
    const offset = main ? convertTicks(offsetTicks, main.timescale, tr.timescale) : offsetTicks;
    const t = Math.max(0, tr.baseTime - offset);
    if (tr.tfdt.version === 1) dv.setBigUint64(tr.tfdt.offset, BigInt(t));
    else dv.setUint32(tr.tfdt.offset, t);
  }
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
  #trexDurations = new Map<number, number>();
  #pendingMoof: Uint8Array | undefined;
  /** The fragment being filled: its moof, then its mdat as the bytes arrive. */
  #fill: { readonly moof: Uint8Array; readonly bytes: Uint8Array; at: number } | undefined;
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
      if (this.#fill !== undefined) {
        // an mdat after its moof: copied into the fragment's buffer as the bytes arrive,
        // so the encoder's pipe chunks die young instead of waiting for the whole GOP
        const f = this.#fill;
        const k = Math.min(this.#len, f.bytes.length - f.at);
        this.#takeInto(f.bytes, f.at, k);
        f.at += k;
        if (f.at < f.bytes.length) return;
        this.#fill = undefined;
        this.#fragment(f.moof, f.bytes);
        continue;
      }
      if (this.#need === undefined) {
        if (this.#len < 8) return;
        const head = this.#peek(Math.min(16, this.#len));
        const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
        let size = dv.getUint32(0);
        let headLength = 8;
        if (size === 1) {
          if (head.length < 16) return;
          size = Number(dv.getBigUint64(8));
          headLength = 16;
        }
        if (size < 8 || size > MAX_BOX) throw new Fmp4Error(`implausible MP4 box size ${size}`);
        const moof = this.#pendingMoof;
        if (
          moof !== undefined &&
          this.#init !== undefined &&
          size >= headLength &&
          String.fromCharCode(head[4] ?? 0, head[5] ?? 0, head[6] ?? 0, head[7] ?? 0) === 'mdat'
        ) {
          this.#pendingMoof = undefined;
          const bytes = new Uint8Array(moof.length + size);
          bytes.set(moof, 0);
          this.#fill = { moof, bytes, at: moof.length };
          continue;
        }
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
    this.#takeInto(out, 0, n);
    return out;
  }

  /** Move the next `n` buffered bytes into `out` at `at`. */
  #takeInto(out: Uint8Array, at: number, n: number): void {
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0];
      if (!c) break;
      const k = Math.min(c.length, n - o);
      out.set(c.subarray(0, k), at + o);
      o += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#len -= o;
  }

  /** Bytes held back waiting for the rest of a box (dropped if the encoder dies). */
  get pendingBytes(): number {
    return this.#len + (this.#pendingMoof?.length ?? 0) + (this.#fill?.at ?? 0);
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
        this.#trexDurations = trexDefaultDurations(bytes);
        this.#onInit(this.#init);
      }
      return;
    }
    if (type === 'moof') {
      this.#pendingMoof = box;
      return;
    }
    // an mdat after its moof never gets here: push() fills the fragment as it arrives
    // mfra, free, styp, sidx: not needed for clips.
  }

  /** A whole fragment: `bytes` is its moof (`moofBytes`) followed by its mdat. */
  #fragment(moofBytes: Uint8Array, bytes: Uint8Array): void {
    const init = this.#init;
    if (init === undefined) throw new Fmp4Error('fragment before the init segment');
    const info = parseMoof(
      moofBytes,
      boxes(moofBytes, 0, moofBytes.length)[0] as Box,
      this.#trexDurations,
    );
    const videoId = init.tracks.find((t) => t.kind === 'video')?.id;
    const main = info.trafs.find((t) => t.trackId === videoId) ?? info.trafs[0];
    if (!main) throw new Fmp4Error('moof has no traf');
    const timescaleOf = (id: number): number =>
      init.tracks.find((t) => t.id === id)?.timescale ?? init.timescale;
    const tracks: TrackTime[] = [main, ...info.trafs.filter((t) => t !== main)].map((t) => ({
      trackId: t.trackId,
      timescale: timescaleOf(t.trackId),
      baseTime: t.baseTime,
      ...(t.tfdt ? { tfdt: t.tfdt } : {}),
    }));
    const ts = timescaleOf(main.trackId);
    this.#onFragment({
      bytes,
      sequence: info.sequence,
      startS: main.baseTime / ts,
      durationS: main.duration / ts,
      keyframe: main.keyframe,
      receivedAt: this.#now(),
      baseTime: main.baseTime,
      ...(main.tfdt ? { tfdt: main.tfdt } : {}),
      tracks,
    });
  }
}
