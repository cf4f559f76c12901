/**
 * Resumable, verified target download. Bytes go to `<dest>.part`; a restart
 * continues from the part's size with an HTTP Range request. Never more than
 * the signed length is accepted; when complete, the file's SHA-256 (and
 * SHA-512 when signed) must match the targets metadata, then it is renamed to
 * `dest`.
 *
 * The part file is an unverified cache, not state: it is appended with plain
 * writes (DurableFs has no append) and fsynced every few MiB and at the end. A
 * power cut may leave it short or with garbage at the tail; the length check
 * and the hashes catch both, and a mismatch restarts the download from zero.
 * The hashes cover the bytes as written (a resumed part's prefix as read back
 * from the file), computed during the transfer.
 * The rename to `dest` goes through DurableFs like every durable step.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VigilError, reasonOf } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { TargetFile } from './metadata.js';
import type { Transport } from './transport.js';

export class DownloadError extends VigilError {
  readonly failure: 'length' | 'hash' | 'fetch';
  constructor(
    failure: 'length' | 'hash' | 'fetch',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(
      failure === 'hash' ? 'EOTA_HASH' : failure === 'length' ? 'EOTA_LENGTH' : 'EOTA_FETCH',
      message,
      options,
    );
    this.name = 'DownloadError';
    this.failure = failure;
  }
}

export interface Progress {
  readonly received: number;
  readonly total: number;
  /** Bytes that were already present from an earlier, interrupted attempt. */
  readonly resumedFrom: number;
}

export interface DownloadOptions {
  readonly transport: Transport;
  readonly fs: DurableFs;
  readonly url: string;
  readonly dest: string;
  readonly target: TargetFile;
  readonly onProgress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
  /** fsync the part file every this many bytes (default 4 MiB). */
  readonly syncEvery?: number;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** The target's hashes this client checks (sha256/sha512); none means nothing to check. */
function hashAlgs(target: TargetFile): string[] {
  return Object.keys(target.hashes).filter((a) => a === 'sha256' || a === 'sha512');
}

function digestsMatch(hs: readonly Hash[], algs: readonly string[], target: TargetFile): boolean {
  return hs.every((h, i) => h.digest('hex') === target.hashes[algs[i] ?? '']);
}

/** Hash a file with every algorithm the target names (sha256/sha512). */
export async function fileMatches(path: string, target: TargetFile): Promise<boolean> {
  const algs = hashAlgs(target);
  if (algs.length === 0) return false; // nothing we can check: refuse
  if ((await sizeOf(path)) !== target.length) return false;
  const hs = algs.map((a) => createHash(a));
  for await (const chunk of createReadStream(path)) for (const h of hs) h.update(chunk as Buffer);
  return digestsMatch(hs, algs, target);
}

/** Download (resuming) and verify; resolves once `dest` holds the verified file. */
export async function downloadTarget(o: DownloadOptions): Promise<{ resumedFrom: number }> {
  const part = `${o.dest}.part`;
  await o.fs.ensureDir(dirname(o.dest));
  const total = o.target.length;
  if ((await sizeOf(o.dest)) === total && (await fileMatches(o.dest, o.target)))
    return { resumedFrom: total };
  let have = await sizeOf(part);
  if (have > total) {
    await rm(part, { force: true });
    have = 0;
  }
  const resumedFrom = have;
  // The hashes are computed as the bytes arrive (a part from an earlier attempt is read once
  // first), not by reading the whole file back afterwards: on a card that read costs as much
  // as the download's own writes.
  const algs = hashAlgs(o.target);
  let hs = algs.map((a) => createHash(a));
  if (have > 0)
    for await (const chunk of createReadStream(part, { end: have - 1 }))
      for (const h of hs) h.update(chunk as Buffer);
  if (have < total) {
    let res;
    try {
      res = await o.transport.getFrom(o.url, have, o.signal);
    } catch (e) {
      throw new DownloadError('fetch', `cannot download ${o.url}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (res.offset !== have) {
      // The server ignored the range: start over from its offset (0).
      await rm(part, { force: true });
      have = res.offset;
      hs = algs.map((a) => createHash(a));
    }
    if (res.total !== undefined && res.total !== total) {
      throw new DownloadError(
        'length',
        `${o.url} is ${String(res.total)} bytes, the signed length is ${String(total)}`,
      );
    }
    const fh = await open(part, have === 0 ? 'w' : 'a');
    const syncEvery = o.syncEvery ?? 4 * 1024 * 1024;
    let sinceSync = 0;
    let tooLong: DownloadError | undefined;
    try {
      for await (const chunk of res.body) {
        if (have + chunk.length > total) {
          tooLong = new DownloadError(
            'length',
            `${o.url} sends more than its signed ${String(total)} bytes (endless data); discarded`,
          );
          break; // stops the transfer
        }
        await fh.write(chunk);
        for (const h of hs) h.update(chunk);
        have += chunk.length;
        sinceSync += chunk.length;
        if (sinceSync >= syncEvery) {
          await fh.sync();
          sinceSync = 0;
        }
        o.onProgress?.({ received: have, total, resumedFrom });
      }
      if (tooLong === undefined) await fh.sync();
    } catch (e) {
      throw new DownloadError(
        'fetch',
        `download of ${o.url} interrupted at ${String(have)}/${String(total)} bytes: ${reasonOf(e)}`,
        { cause: e },
      );
    } finally {
      await fh.close();
    }
    if (tooLong !== undefined) {
      // A server that overruns the signed length is not a source to resume from.
      await rm(part, { force: true });
      throw tooLong;
    }
    if (have < total) {
      throw new DownloadError(
        'fetch',
        `download of ${o.url} ended at ${String(have)}/${String(total)} bytes; it resumes next time`,
      );
    }
  }
  if (algs.length === 0 || (await sizeOf(part)) !== total || !digestsMatch(hs, algs, o.target)) {
    await rm(part, { force: true });
    throw new DownloadError(
      'hash',
      `${o.url}: hash does not match the signed targets metadata; discarded`,
    );
  }
  // The verified bytes become the durable download (rename + dir fsync as crash points).
  o.fs.crash.point('download:verified');
  await rename(part, o.dest);
  await syncDir(dirname(o.dest));
  o.fs.crash.point('download:renamed');
  return { resumedFrom };
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
