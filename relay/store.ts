/**
 * Relay storage ports. Two kinds of data, kept apart because they scale apart:
 *
 *  - `BlobStore`: ciphertext chunks, immutable once written (one object per
 *    accepted append, keyed `<device>/<seq>/<offset>`), so the same layout works
 *    on a local filesystem and on an S3-compatible object store, whose objects
 *    cannot be appended to.
 *  - `RecordStore`: small metadata documents (accounts, item records, pairing
 *    rendezvous), loaded into memory at start and written through on every change.
 *
 * The local implementations write through `DurableFs` (temp, fsync, rename,
 * fsync dir), so whatever the relay acknowledged survives a crash or power cut.
 *
 * A full disk must not wedge the relay: uploads are refused (507), and the
 * metadata writes that free space (an acknowledgement, a tombstone) can fall
 * back on a reserve file (`SpaceReserve`) that they release when the disk is
 * full, so acknowledging, and with it freeing space, always works.
 */
import { chmod, readdir, readFile, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DurableFs } from '../hw/os/fs.js';
import { VigilError } from '../base/errors.js';
import { RelayError } from './errors.js';

export interface BlobStore {
  /** Durably store `data` under `key` (replacing any previous content). */
  put(key: string, data: Uint8Array): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  /** Remove (no error when absent). */
  delete(key: string): Promise<void>;
  readonly name: string;
}

export interface RecordWriteOptions {
  /**
   * This write frees space (an acknowledgement, a tombstone before blobs are
   * deleted): on a full disk it may use the space reserve. Other writes fail
   * with 507 instead, so the reserve is there when an acknowledgement needs it.
   */
  readonly freesSpace?: boolean;
  /**
   * The document holds a secret (the relay's VAPID private key): the local
   * file store keeps its namespace directory owner-only (0700).
   */
  readonly secret?: boolean;
}

export interface RecordStore {
  put(ns: string, id: string, doc: unknown, opts?: RecordWriteOptions): Promise<void>;
  delete(ns: string, id: string): Promise<void>;
  /** Every document of a namespace, as parsed JSON (unvalidated: callers parse with zod). */
  loadAll(ns: string): Promise<{ id: string; doc: unknown }[]>;
}

const KEY_RE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

export function checkKey(key: string): string {
  if (!KEY_RE.test(key) || key.split('/').some((p) => p === '.' || p === '..')) {
    throw new VigilError('EKEY', `invalid storage key: ${key.slice(0, 80)}`);
  }
  return key;
}

/** A full filesystem (or a quota): the operation may succeed once space is freed. */
export function isNoSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export function storageFull(cause?: unknown): RelayError {
  return new RelayError(
    507,
    'ENOSPACE',
    'the relay is out of storage space; try again later',
    { retryAfterMs: 60_000 },
    { cause },
  );
}

/**
 * Space held back for metadata on the filesystem of the local stores: a file
 * of `bytes` bytes. A metadata write that frees space and finds the disk full
 * releases it and retries; blob writes are refused while it is released, and
 * each blob write first tries to take it back (it succeeds once
 * acknowledgements freed space).
 */
export class SpaceReserve {
  readonly #path: string;
  readonly #fs: DurableFs;
  readonly #bytes: number;
  #held = false;
  #busy: Promise<unknown> = Promise.resolve();

  constructor(path: string, fs: DurableFs, bytes: number) {
    this.#path = path;
    this.#fs = fs;
    this.#bytes = bytes;
  }

  get held(): boolean {
    return this.#held;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.#busy.then(fn, fn);
    this.#busy = r.catch(() => undefined);
    return r;
  }

  /**
   * Hold the reserve; false when the disk has no room for it. Once released it
   * is written again only when the disk has room for it twice over (space was
   * freed), so blob writes cannot take back what metadata writes still need.
   */
  ensure(): Promise<boolean> {
    return this.#serial(async () => {
      if (this.#held) return true;
      try {
        if ((await stat(this.#path).catch(() => undefined))?.size !== this.#bytes) {
          const fsInfo = await statfs(dirname(this.#path)).catch(() => undefined);
          if (fsInfo && fsInfo.bavail * fsInfo.bsize < 2 * this.#bytes) return false;
          await this.#fs.writeFileAtomic(this.#path, Buffer.alloc(this.#bytes), 'space-reserve');
        }
        this.#held = true;
      } catch (e) {
        if (!isNoSpace(e)) throw e;
      }
      return this.#held;
    });
  }

  /** Give the reserved space to the filesystem (a metadata write needs it). */
  release(): Promise<void> {
    return this.#serial(async () => {
      this.#held = false;
      await this.#fs.remove(this.#path, 'space-reserve');
    });
  }
}

/** Blobs as files under `<dir>/<key>`, written atomically and durably. */
export class FsBlobStore implements BlobStore {
  readonly name = 'fs';
  readonly #dir: string;
  readonly #fs: DurableFs;
  readonly #reserve: SpaceReserve | undefined;

  constructor(dir: string, fs: DurableFs, reserve?: SpaceReserve) {
    this.#dir = dir;
    this.#fs = fs;
    this.#reserve = reserve;
  }

  /** Full disk: 507 ENOSPACE, nothing left behind. */
  async put(key: string, data: Uint8Array): Promise<void> {
    const path = join(this.#dir, checkKey(key));
    if (this.#reserve && !(await this.#reserve.ensure())) throw storageFull();
    try {
      await this.#fs.writeFileAtomic(path, data, 'blob');
    } catch (e) {
      if (isNoSpace(e)) throw storageFull(e);
      throw e;
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    return this.#fs.readIfExists(join(this.#dir, checkKey(key)));
  }

  async delete(key: string): Promise<void> {
    await this.#fs.remove(join(this.#dir, checkKey(key)), 'blob');
  }
}

/** Records as one JSON file each under `<dir>/<ns>/<id>.json`. */
export class FsRecordStore implements RecordStore {
  readonly #dir: string;
  readonly #fs: DurableFs;
  readonly #reserve: SpaceReserve | undefined;

  constructor(dir: string, fs: DurableFs, reserve?: SpaceReserve) {
    this.#dir = dir;
    this.#fs = fs;
    this.#reserve = reserve;
  }

  #path(ns: string, id: string): string {
    return join(this.#dir, checkKey(ns), `${checkKey(id)}.json`);
  }

  /** On a full disk: 507 ENOSPACE, or for a write that frees space, release the reserve and retry. */
  async put(ns: string, id: string, doc: unknown, opts?: RecordWriteOptions): Promise<void> {
    if (opts?.secret === true) {
      const dir = join(this.#dir, checkKey(ns));
      await this.#fs.ensureDir(dir);
      await chmod(dir, 0o700);
    }
    const write = (): Promise<void> =>
      this.#fs.writeFileAtomic(this.#path(ns, id), JSON.stringify(doc), `record-${ns}`);
    try {
      await write();
    } catch (e) {
      if (!isNoSpace(e)) throw e;
      if (!this.#reserve || opts?.freesSpace !== true) throw storageFull(e);
      await this.#reserve.release();
      try {
        await write();
      } catch (e2) {
        if (isNoSpace(e2)) throw storageFull(e2);
        throw e2;
      }
    }
  }

  async delete(ns: string, id: string): Promise<void> {
    await this.#fs.remove(this.#path(ns, id), `record-${ns}`);
  }

  async loadAll(ns: string): Promise<{ id: string; doc: unknown }[]> {
    const dir = join(this.#dir, checkKey(ns));
    await this.#fs.cleanTemp(dir);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: { id: string; doc: unknown }[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith('.json') || name.startsWith('.')) continue;
      const text = await readFile(join(dir, name), 'utf8');
      try {
        out.push({ id: name.slice(0, -5), doc: JSON.parse(text) as unknown });
      } catch (e) {
        throw new VigilError('ECORRUPT', `relay record ${ns}/${name} is not valid JSON`, {
          cause: e,
        });
      }
    }
    return out;
  }
}

/** In-memory blobs (unit tests of the layers above the store only). */
export class MemoryBlobStore implements BlobStore {
  readonly name = 'memory';
  readonly blobs = new Map<string, Buffer>();
  put(key: string, data: Uint8Array): Promise<void> {
    this.blobs.set(checkKey(key), Buffer.from(data));
    return Promise.resolve();
  }
  get(key: string): Promise<Buffer | undefined> {
    return Promise.resolve(this.blobs.get(checkKey(key)));
  }
  delete(key: string): Promise<void> {
    this.blobs.delete(checkKey(key));
    return Promise.resolve();
  }
}
