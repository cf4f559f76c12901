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
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DurableFs } from '../hw/os/fs.js';
import { VigilError } from '../base/errors.js';

export interface BlobStore {
  /** Durably store `data` under `key` (replacing any previous content). */
  put(key: string, data: Uint8Array): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  /** Remove (no error when absent). */
  delete(key: string): Promise<void>;
  readonly name: string;
}

export interface RecordStore {
  put(ns: string, id: string, doc: unknown): Promise<void>;
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

/** Blobs as files under `<dir>/<key>`, written atomically and durably. */
export class FsBlobStore implements BlobStore {
  readonly name = 'fs';
  readonly #dir: string;
  readonly #fs: DurableFs;

  constructor(dir: string, fs: DurableFs) {
    this.#dir = dir;
    this.#fs = fs;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    await this.#fs.writeFileAtomic(join(this.#dir, checkKey(key)), data, 'blob');
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

  constructor(dir: string, fs: DurableFs) {
    this.#dir = dir;
    this.#fs = fs;
  }

  #path(ns: string, id: string): string {
    return join(this.#dir, checkKey(ns), `${checkKey(id)}.json`);
  }

  async put(ns: string, id: string, doc: unknown): Promise<void> {
    await this.#fs.writeFileAtomic(this.#path(ns, id), JSON.stringify(doc), `record-${ns}`);
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
