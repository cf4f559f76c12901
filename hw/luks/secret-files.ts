/**
 * Key files for the few cryptsetup calls that need a second key (luksAddKey
 * takes the existing key on stdin and the new one from a file). The file lives
 * in a fresh 0700 directory on a tmpfs (never on flash), is created 0600 with
 * O_EXCL, and is overwritten and removed as soon as the call returns — also
 * when it fails.
 */
import { constants as FS } from 'node:fs';
import { mkdir, mkdtemp, open, rm, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError } from '../../base/errors.js';

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

export class SecretFileError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ESECRETFILE', message, options);
    this.name = 'SecretFileError';
  }
}

export interface SecretFilesOptions {
  /** Parent directory; must be on tmpfs/ramfs. Production: /run/vigil/keys. */
  readonly baseDir: string;
  /** Tests on odd machines may relax the tmpfs check; production never does. */
  readonly requireTmpfs?: boolean;
}

export class SecretFiles {
  readonly baseDir: string;
  readonly #requireTmpfs: boolean;
  #checked = false;

  constructor(opts: SecretFilesOptions) {
    this.baseDir = opts.baseDir;
    this.#requireTmpfs = opts.requireTmpfs ?? true;
  }

  async #ensureBase(): Promise<void> {
    await mkdir(this.baseDir, { recursive: true, mode: 0o700 });
    if (this.#checked || !this.#requireTmpfs) return;
    const st = await statfs(this.baseDir);
    if (st.type !== TMPFS_MAGIC && st.type !== RAMFS_MAGIC) {
      throw new SecretFileError(
        `${this.baseDir} is not on tmpfs (filesystem type 0x${st.type.toString(16)}): key files must never touch flash`,
      );
    }
    this.#checked = true;
  }

  /** Run `fn` with the path of a private file holding `secret`; the file is gone when this resolves. */
  async withFile<T>(secret: Uint8Array, fn: (path: string) => Promise<T>): Promise<T> {
    await this.#ensureBase();
    const dir = await mkdtemp(join(this.baseDir, 'k-'));
    const path = join(dir, 'key');
    try {
      const fh = await open(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o600);
      try {
        await fh.writeFile(secret);
      } finally {
        await fh.close();
      }
      return await fn(path);
    } finally {
      await shred(path, secret.length);
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** Overwrite then unlink (on tmpfs this really frees the pages; on flash see docs/storage.md). */
export async function shred(path: string, length: number): Promise<void> {
  try {
    const fh = await open(path, FS.O_WRONLY);
    try {
      await fh.write(Buffer.alloc(length), 0, length, 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
