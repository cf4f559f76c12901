/**
 * The durable file layer. Every file Vigil must not lose is written through
 * `DurableFs`: write a temp file, fsync it, rename over the target, fsync the
 * directory. Each step passes a **numbered crash point**; a `CrashController`
 * can stop the process at any of them, either as a plain kill (everything the
 * kernel already has survives) or as a simulated power loss (writes and
 * directory entries not yet fsynced are rolled back to what a power cut could
 * leave: the last synced content, or nothing).
 *
 * Crash points are numbered in the order a process reaches them (1, 2, 3...),
 * so a test runs a scenario once with tracing to learn N, then re-runs it
 * crashing at 1..N in both modes. New durable writes are covered automatically.
 *
 * Power-loss model (ext4 data=ordered, worst case that POSIX allows):
 *  - file data becomes durable at fsync(file);
 *  - a directory entry (create, rename, unlink) becomes durable at fsync(dir);
 *  - a durable entry whose data was never synced comes back empty.
 */
import { constants as FS, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { access, mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { VigilError } from '../../base/errors.js';

export type CrashMode = 'kill' | 'power-loss';

/** Thrown (in `throw` delivery) when a simulated crash fires. Never catch it in product code. */
export class SimulatedCrash extends VigilError {
  readonly point: number;
  readonly label: string;
  readonly mode: CrashMode;
  constructor(point: number, label: string, mode: CrashMode) {
    super('ECRASH', `simulated ${mode} at crash point ${point} (${label})`);
    this.name = 'SimulatedCrash';
    this.point = point;
    this.label = label;
    this.mode = mode;
  }
}

export interface CrashPlan {
  /** Crash when the Nth point (1-based) is reached. */
  readonly at: number;
  readonly mode: CrashMode;
  /**
   * `exit`: SIGKILL this process (real crash). `throw`: throw SimulatedCrash so
   * an in-process test can drop every object and reopen from disk.
   */
  readonly delivery: 'exit' | 'throw';
}

export interface CrashPointRecord {
  readonly n: number;
  readonly label: string;
}

/**
 * Counts crash points and fires the configured crash. Not a singleton: the
 * composition root makes one (from the environment in production, where it is
 * inert unless VIGIL_CRASH_AT is set) and hands it to every DurableFs.
 */
export class CrashController {
  #count = 0;
  #plan: CrashPlan | undefined;
  #trace: CrashPointRecord[] = [];
  #onPowerLoss: (() => void)[] = [];
  #fired = false;

  constructor(plan?: CrashPlan) {
    this.#plan = plan;
  }

  /** VIGIL_CRASH_AT=N, VIGIL_CRASH_MODE=kill|power-loss (exit delivery). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): CrashController {
    const at = env.VIGIL_CRASH_AT;
    if (at === undefined || at === '') return new CrashController();
    const n = Number(at);
    if (!Number.isInteger(n) || n < 1)
      throw new VigilError('ECONFIG', `VIGIL_CRASH_AT must be a positive integer, got "${at}"`);
    const mode = env.VIGIL_CRASH_MODE === 'power-loss' ? 'power-loss' : 'kill';
    return new CrashController({ at: n, mode, delivery: 'exit' });
  }

  get count(): number {
    return this.#count;
  }

  /**
   * True when a crash is planned. Only then does DurableFs keep the power-loss
   * bookkeeping (copies of synced contents): without a plan nothing can roll
   * back, and long-running processes (the relay, the hub) must not hold a copy
   * of every file they ever wrote.
   */
  get armed(): boolean {
    return this.#plan !== undefined;
  }

  get trace(): readonly CrashPointRecord[] {
    return this.#trace;
  }

  get fired(): boolean {
    return this.#fired;
  }

  /** DurableFs registers its rollback here so a power-loss crash can apply it. */
  registerPowerLossHandler(fn: () => void): void {
    this.#onPowerLoss.push(fn);
  }

  /** Pass a numbered crash point. */
  point(label: string): void {
    if (this.#fired) return;
    this.#count += 1;
    const n = this.#count;
    this.#trace.push({ n, label });
    const plan = this.#plan;
    if (plan === undefined || plan.at !== n) return;
    this.#fired = true;
    if (plan.mode === 'power-loss') for (const fn of this.#onPowerLoss) fn();
    if (plan.delivery === 'exit') {
      process.kill(process.pid, 'SIGKILL');
    }
    throw new SimulatedCrash(n, label, plan.mode);
  }
}

interface PendingEntry {
  readonly dir: string;
  readonly path: string;
}

/** Close a temp's handle and remove the temp (a failed or abandoned write holds no space). */
async function closeAndRemove(fh: FileHandle, tmp: string): Promise<void> {
  await fh.close().catch(() => undefined);
  await rm(tmp, { force: true }).catch(() => undefined);
}

/**
 * Durable, crash-testable file operations. All paths are real paths (already
 * mapped through HostPaths by the caller).
 */
export class DurableFs {
  readonly crash: CrashController;
  /** What each touched path would hold after a power cut now (null = absent). */
  #durable = new Map<string, Buffer | null>();
  /** Synced data of files whose directory entry is not yet durable. */
  #syncedData = new Map<string, Buffer>();
  #pending: PendingEntry[] = [];
  #tmpSeq = 0;

  constructor(crash: CrashController = new CrashController()) {
    this.crash = crash;
    crash.registerPowerLossHandler(() => {
      this.#rollbackUnsynced();
    });
  }

  // ---- power-loss bookkeeping -------------------------------------------------

  #remember(path: string, current: Buffer | null): void {
    if (!this.#durable.has(path)) this.#durable.set(path, current);
  }

  async #currentContent(path: string): Promise<Buffer | null> {
    try {
      return await readFile(path);
    } catch (e) {
      if (
        (e as NodeJS.ErrnoException).code === 'ENOENT' ||
        (e as NodeJS.ErrnoException).code === 'EISDIR'
      )
        return null;
      throw e;
    }
  }

  #entryPending(path: string): boolean {
    return this.#pending.some((p) => p.path === path);
  }

  #rollbackUnsynced(): void {
    // Synchronous on purpose: runs right before the process dies.
    for (const [path, content] of this.#durable) {
      try {
        if (content === null) rmSync(path, { force: true });
        else {
          mkdirSync(dirname(path), { recursive: true });
          writeFileSync(path, content);
        }
      } catch {
        /* best effort: the process is about to die */
      }
    }
  }

  // ---- primitive operations (each one a crash point) --------------------------

  /** Power-loss bookkeeping before `path` is created or overwritten (armed only). */
  async #rememberNew(path: string): Promise<void> {
    this.#remember(path, await this.#currentContent(path));
    const existed = (await this.#currentContent(path)) !== null;
    if (!existed) this.#pending.push({ dir: dirname(path), path });
  }

  /** Power-loss bookkeeping after `path`'s data was fsynced (armed only). */
  async #noteSynced(path: string): Promise<void> {
    if (!this.crash.armed) return;
    const data = await readFile(path);
    if (this.#entryPending(path)) this.#syncedData.set(path, data);
    else this.#durable.set(path, data);
  }

  async #fsyncDir(dir: string): Promise<void> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(dir, FS.O_RDONLY | FS.O_DIRECTORY);
      await fh.sync();
    } finally {
      await fh?.close();
    }
    const still: PendingEntry[] = [];
    for (const p of this.#pending) {
      if (p.dir !== dir) {
        still.push(p);
        continue;
      }
      const exists = (await this.#currentContent(p.path)) !== null;
      this.#durable.set(p.path, exists ? (this.#syncedData.get(p.path) ?? Buffer.alloc(0)) : null);
      this.#syncedData.delete(p.path);
    }
    this.#pending = still;
  }

  async #rename(from: string, to: string): Promise<void> {
    if (!this.crash.armed) {
      await rename(from, to);
      return;
    }
    this.#remember(from, await this.#currentContent(from));
    this.#remember(to, await this.#currentContent(to));
    await rename(from, to);
    const synced =
      this.#syncedData.get(from) ??
      (this.#entryPending(from) ? undefined : this.#durable.get(from));
    this.#syncedData.delete(from);
    if (synced) this.#syncedData.set(to, synced);
    this.#pending.push({ dir: dirname(from), path: from }, { dir: dirname(to), path: to });
  }

  // ---- public API -------------------------------------------------------------

  /** Create a directory (and parents) durably. */
  async ensureDir(dir: string): Promise<void> {
    const missing: string[] = [];
    let d = dir;
    for (;;) {
      try {
        await stat(d);
        break;
      } catch {
        missing.unshift(d);
        const up = dirname(d);
        if (up === d) break;
        d = up;
      }
    }
    if (missing.length === 0) return;
    await mkdir(dir, { recursive: true });
    for (const m of missing) await this.#fsyncDirQuiet(dirname(m));
  }

  async #fsyncDirQuiet(dir: string): Promise<void> {
    try {
      const fh = await open(dir, FS.O_RDONLY | FS.O_DIRECTORY);
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch {
      /* a directory that cannot be opened cannot be synced either */
    }
  }

  /**
   * Atomically and durably replace `path` with `data`. After it returns the new
   * content survives a power cut; a crash at any point inside leaves either the
   * complete old or the complete new content.
   */
  async writeFileAtomic(path: string, data: FileData, label = basename(path)): Promise<void> {
    const dir = dirname(path);
    if (!this.#ensured.has(dir)) await this.#ensureDirOnce(dir);
    const tmp = this.#tmpName(path);
    this.crash.point(`${label}:before-write`);
    if (this.crash.armed) await this.#rememberNew(tmp);
    // One handle for write, fsync and close (issue #19: each async file operation costs
    // ~0.1 CPU-ms of thread-pool hand-off; an atomic write was 11 of them, now 8).
    let fh: FileHandle;
    try {
      fh = await open(tmp, 'w');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // the directory went away since it was ensured: make it again
      this.#ensured.delete(dir);
      await this.#ensureDirOnce(dir);
      fh = await open(tmp, 'w');
    }
    try {
      await writeAll(fh, data);
    } catch (e) {
      await closeAndRemove(fh, tmp);
      throw e;
    }
    await this.#syncAndReplace(fh, tmp, path, label);
  }

  /**
   * The durable tail of an atomic write whose content is in `tmp`: fsync and close through
   * the handle it was written with (no reopening), then `#replace`. A failure closes the
   * handle and removes the temp; a simulated crash leaves the temp as a real one would.
   */
  async #syncAndReplace(fh: FileHandle, tmp: string, path: string, label: string): Promise<void> {
    let open_ = true;
    try {
      this.crash.point(`${label}:written`);
      await fh.sync();
      await this.#noteSynced(tmp);
      open_ = false;
      await fh.close();
    } catch (e) {
      if (open_) await fh.close().catch(() => undefined);
      if (!(e instanceof SimulatedCrash)) await rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
    await this.#replace(tmp, path, label);
  }

  /** Directories this instance made sure of (writeFileAtomic skips the stat for them). */
  readonly #ensured = new Set<string>();

  async #ensureDirOnce(dir: string): Promise<void> {
    await this.ensureDir(dir);
    this.#ensured.add(dir);
  }

  #tmpName(path: string): string {
    this.#tmpSeq += 1;
    return join(dirname(path), `.${basename(path)}.${process.pid}.${this.#tmpSeq}.tmp`);
  }

  /**
   * An atomic write whose content arrives in pieces (a local copy of an item as it is
   * sealed): `append` writes to a temp file without syncing, `commit` makes it `path`
   * durably (fsync, rename, fsync dir: the same crash points as `writeFileAtomic`), and
   * `discard` removes the temp. Until `commit` returns, `path` is untouched; a crash
   * leaves a temp that `cleanTemp` removes.
   */
  async createAtomic(path: string, label = basename(path)): Promise<AtomicFile> {
    const dir = dirname(path);
    await this.ensureDir(dir);
    const tmp = this.#tmpName(path);
    this.crash.point(`${label}:before-write`);
    if (this.crash.armed) await this.#rememberNew(tmp);
    const fh = await open(tmp, 'w');
    let bytes = 0;
    let state: 'open' | 'committed' | 'discarded' = 'open';
    return {
      get bytes() {
        return bytes;
      },
      append: async (parts) => {
        if (state !== 'open') throw new VigilError('ECLOSED', `${label}: the write is finished`);
        try {
          bytes += await writevAll(fh, parts);
        } catch (e) {
          state = 'discarded';
          await closeAndRemove(fh, tmp);
          throw e;
        }
      },
      commit: async () => {
        if (state !== 'open') throw new VigilError('ECLOSED', `${label}: the write is finished`);
        state = 'committed';
        await this.#syncAndReplace(fh, tmp, path, label);
      },
      discard: async () => {
        if (state !== 'open') return;
        state = 'discarded';
        await closeAndRemove(fh, tmp);
      },
    };
  }

  /** An fsynced temp renamed over `path`, then the directory fsynced (the last crash points). */
  async #replace(tmp: string, path: string, label: string): Promise<void> {
    this.crash.point(`${label}:fsynced`);
    await this.#orDiscard(tmp, () => this.#rename(tmp, path));
    this.crash.point(`${label}:renamed`);
    await this.#fsyncDir(dirname(path));
    this.crash.point(`${label}:dir-fsynced`);
  }

  /**
   * Run one step of an atomic write; when it fails (a full disk, an I/O error),
   * remove the temp file before rethrowing, so a failed write holds no space.
   * Crash points are outside these steps: a simulated crash leaves the temp as
   * a real one would.
   */
  async #orDiscard(tmp: string, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Durably append `data` at the end of `path` (created, with its directory entry synced, when
   * absent): one write through an O_APPEND handle, then fdatasync (the file's size is synced with
   * its data). After it returns the appended bytes survive a power cut. Crash points
   * `before-append`, `appended` (written, not synced) and `append-synced`; the power-loss model
   * rolls an unsynced append back to the last synced content, while a real power cut may also
   * keep a torn prefix of `data`: a reader of an append-only file must detect one (a frame per
   * record), and a writer whose append failed must not append after the partial bytes.
   */
  async append(path: string, data: FileData, label = basename(path)): Promise<void> {
    const dir = dirname(path);
    this.crash.point(`${label}:before-append`);
    if (this.crash.armed) await this.#rememberNew(path);
    let fh: FileHandle;
    let created = false;
    try {
      fh = await open(path, FS.O_WRONLY | FS.O_APPEND);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (!this.#ensured.has(dir)) await this.#ensureDirOnce(dir);
      fh = await open(path, FS.O_WRONLY | FS.O_APPEND | FS.O_CREAT, 0o666);
      created = true;
    }
    try {
      await writeAll(fh, data);
      this.crash.point(`${label}:appended`);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await this.#noteSynced(path);
    if (created) await this.#fsyncDir(dir);
    this.crash.point(`${label}:append-synced`);
  }

  /** Durably remove a file (no error when absent). */
  async remove(path: string, label = basename(path)): Promise<void> {
    if (this.crash.armed) {
      const cur = await this.#currentContent(path);
      if (cur === null) return;
      this.#remember(path, cur);
    } else {
      try {
        if ((await stat(path)).isDirectory()) return; // as before: only files are removed
      } catch {
        return;
      }
    }
    this.crash.point(`${label}:before-unlink`);
    await unlink(path);
    if (this.crash.armed) this.#pending.push({ dir: dirname(path), path });
    this.crash.point(`${label}:unlinked`);
    await this.#fsyncDir(dirname(path));
    this.crash.point(`${label}:unlink-dir-fsynced`);
  }

  /** Remove leftovers of interrupted atomic writes in a directory. */
  async cleanTemp(dir: string): Promise<number> {
    const { readdir } = await import('node:fs/promises');
    let n = 0;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return 0;
    }
    for (const name of names) {
      if (name.startsWith('.') && name.endsWith('.tmp')) {
        await rm(join(dir, name), { force: true });
        n += 1;
      }
    }
    return n;
  }

  /** Read a file, or undefined when it does not exist. */
  async readIfExists(path: string): Promise<Buffer | undefined> {
    return (await this.#currentContent(path)) ?? undefined;
  }
}

/** What an atomic write takes: bytes, text, or parts written in order (one vectored write). */
export type FileData = Uint8Array | string | readonly Uint8Array[];

/** An atomic write in progress (`DurableFs.createAtomic`). */
export interface AtomicFile {
  /** Bytes appended so far. */
  readonly bytes: number;
  /** Append parts in order (vectored, not synced). */
  append(parts: readonly Uint8Array[]): Promise<void>;
  /** Make the content the file's, durably; after it returns it survives a power cut. */
  commit(): Promise<void>;
  /** Give up: the temp goes, the target stays as it was. */
  discard(): Promise<void>;
}

/** Most iovecs one writev takes (Linux IOV_MAX). */
const IOV_MAX = 1024;

/** Write all parts at the handle's position; returns the bytes written. */
async function writevAll(fh: FileHandle, parts: readonly Uint8Array[]): Promise<number> {
  let total = 0;
  for (let i = 0; i < parts.length; i += IOV_MAX) {
    const batch = parts.slice(i, i + IOV_MAX);
    const want = batch.reduce((n, p) => n + p.length, 0);
    const { bytesWritten } = await fh.writev(batch);
    // A short write (rare on a regular file): write what is left of this batch in one piece.
    if (bytesWritten < want) await fh.write(Buffer.concat(batch).subarray(bytesWritten));
    total += want;
  }
  return total;
}

/** Write all of `data` at the handle's position (one write for bytes or text, one writev for parts). */
async function writeAll(fh: FileHandle, data: FileData): Promise<void> {
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
    await writevAll(fh, data);
    return;
  }
  const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off);
    off += bytesWritten;
  }
}

/** Whether `p` exists (any type; a dangling symlink counts as missing). */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}
