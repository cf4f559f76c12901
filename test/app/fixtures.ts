/**
 * App-side test fixtures: real H.264 fMP4 clips and JPEG thumbnails from
 * ffmpeg (libx264), and a sealer that writes the real container with a static
 * wrap key (the development stand-in for MLS, matching StaticKeyCrypto).
 */
import { randomBytes } from 'node:crypto';
import { run } from '../../hw/os/run.js';
import type {
  CiphertextSink,
  ItemMeta,
  ItemSealer,
  SealedItemWriter,
} from '../../firmware/items.js';
import { ContainerWriter, newContentKey, newItemId, sealHeader } from '../../protocol/container.js';

export const H264_CODEC = 'video/mp4; codecs="avc1.42C01E"';

/** A fragmented MP4 (H.264 constrained baseline, keyframe fragments) of `seconds`. */
export async function makeClip(seconds = 2, size = '320x240'): Promise<Buffer> {
  const r = await run(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      `testsrc=size=${size}:rate=15`,
      '-t',
      String(seconds),
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-profile:v',
      'baseline',
      '-level',
      '3.0',
      '-pix_fmt',
      'yuv420p',
      '-g',
      '15',
      '-movflags',
      '+frag_keyframe+empty_moov+default_base_moof',
      '-f',
      'mp4',
      'pipe:1',
    ],
    { timeoutMs: 60_000 },
  );
  return r.stdout;
}

export async function makeJpeg(): Promise<Buffer> {
  const r = await run(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=160x90:rate=1',
      '-frames:v',
      '1',
      '-f',
      'mjpeg',
      'pipe:1',
    ],
    { timeoutMs: 30_000 },
  );
  return r.stdout;
}

/** Seals items in the real container, the content key wrapped under one static key. */
export class StaticKeySealer implements ItemSealer {
  readonly #wrapKey: Buffer;
  readonly #sink: CiphertextSink;
  readonly #deviceId: string;
  readonly #chunkSize: number;

  constructor(
    wrapKey: Buffer,
    sink: CiphertextSink,
    deviceId = 'dev-static',
    chunkSize = 16 * 1024,
  ) {
    this.#wrapKey = wrapKey;
    this.#sink = sink;
    this.#deviceId = deviceId;
    this.#chunkSize = chunkSize;
  }

  async begin(meta: ItemMeta): Promise<SealedItemWriter> {
    const itemId = newItemId();
    const cek = newContentKey();
    const h = sealHeader(
      {
        itemId,
        kind: meta.kind,
        flags: 0,
        deviceId: this.#deviceId,
        startedAt: meta.startedAt,
        codec: meta.codec,
        chunkSize: this.#chunkSize,
        recipients: [{ groupId: Buffer.from('static'), epoch: 1n, handshake: randomBytes(8) }],
      },
      cek,
      [this.#wrapKey],
    );
    const w = new ContainerWriter(cek, itemId, h.digest, this.#chunkSize);
    const id = itemId.toString('hex');
    await this.#sink.append(id, meta.kind, h.record, false);
    const sink = this.#sink;
    return {
      itemId: id,
      epoch: 1n,
      async write(plain) {
        for (const rec of w.seal(plain)) await sink.append(id, meta.kind, rec, false);
      },
      async close(durationMs) {
        await sink.append(id, meta.kind, w.end('complete', durationMs), true);
      },
      async abort(reason) {
        await sink.append(id, meta.kind, w.end('aborted', 0, reason), true);
      },
    };
  }
}

/** Seal a whole payload as one item. */
export async function sealWhole(
  sealer: ItemSealer,
  meta: ItemMeta,
  payload: Buffer,
  pieces = 4,
  durationMs = 2000,
): Promise<string> {
  const w = await sealer.begin(meta);
  const step = Math.max(1, Math.ceil(payload.length / pieces));
  for (let off = 0; off < payload.length; off += step)
    await w.write(payload.subarray(off, off + step));
  await w.close(durationMs);
  return w.itemId;
}
