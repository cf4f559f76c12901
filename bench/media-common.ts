/**
 * Shared wiring for the media benchmarks: a hub paired with one companion
 * (real MLS sealer, the post-quantum suite loaded as in production) and a sink
 * that timestamps and counts ciphertext instead of keeping it.
 */
import { rmSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CiphertextSink } from '../firmware/items.js';
import type { ItemKind } from '../protocol/items.js';
import type { MlsItemSealer } from '../firmware/mls/sealer.js';
import { loadMlsProfile } from '../protocol/mls-profile.js';
import { newDevicePsk, openHub, pair, sealerFor, tempDir } from '../dev/fixtures/paired-hub.js';

export class CountingSink implements CiphertextSink {
  bytes = 0;
  readonly firstDataAt = new Map<string, number>();
  readonly kinds = new Map<string, ItemKind>();
  #records = new Map<string, number>();
  append(itemId: string, kind: ItemKind, bytes: Uint8Array, _final: boolean): Promise<void> {
    this.bytes += bytes.length;
    this.kinds.set(itemId, kind);
    const n = (this.#records.get(itemId) ?? 0) + 1;
    this.#records.set(itemId, n);
    // record 1 is the header (commit + wrapped keys); record 2 the first sealed chunk
    if (n === 2) this.firstDataAt.set(itemId, performance.timeOrigin + performance.now());
    return Promise.resolve();
  }
}

export async function realSealer(
  sink: CiphertextSink,
): Promise<{ sealer: MlsItemSealer; cleanup: () => void }> {
  const root = tempDir('vigil-media-bench-');
  const profile = await loadMlsProfile();
  const hub = await openHub(profile, join(root, 'hub'));
  const paired = await pair({
    p: profile,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone'),
  });
  if (!paired.phone) throw new Error('pairing failed');
  return {
    sealer: sealerFor(hub, sink),
    cleanup: () => {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** CPU seconds (user+system) and RSS (bytes) of another process, from /proc. */
export async function procUsage(
  pid: number,
): Promise<{ cpuS: number; rss: number; anon: number; file: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number =>
      Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? '0') * 1024;
    return { cpuS: ticks / 100, rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
  } catch {
    return undefined;
  }
}

/**
 * Per-thread CPU ticks (user, system) and minor page faults of a process, from
 * /proc/PID/task: where a process's CPU goes (its main thread vs V8's and libuv's helpers).
 */
export async function procThreads(
  pid: number,
): Promise<Map<number, { user: number; sys: number; minflt: number }>> {
  const out = new Map<number, { user: number; sys: number; minflt: number }>();
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), {
        minflt: Number(f[7]),
        user: Number(f[11]) / 100,
        sys: Number(f[12]) / 100,
      });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

/**
 * What a process's threads used between two `procThreads` samples, as % of one core over
 * `wallS`: the main thread (user / system) and all other threads, and minor faults per second.
 */
export function threadSplit(
  pid: number,
  a: Map<number, { user: number; sys: number; minflt: number }>,
  b: Map<number, { user: number; sys: number; minflt: number }>,
  wallS: number,
): string {
  let mainUser = 0;
  let mainSys = 0;
  let otherUser = 0;
  let otherSys = 0;
  let faults = 0;
  for (const [tid, end] of b) {
    const start = a.get(tid) ?? { user: 0, sys: 0, minflt: 0 };
    const user = end.user - start.user;
    const sys = end.sys - start.sys;
    faults += end.minflt - start.minflt;
    if (tid === pid) {
      mainUser += user;
      mainSys += sys;
    } else {
      otherUser += user;
      otherSys += sys;
    }
  }
  const p = (x: number): string => `${((x / wallS) * 100).toFixed(2)} %`;
  return `main thread ${p(mainUser + mainSys)} (user ${p(mainUser)}, system ${p(mainSys)}), other threads ${p(otherUser + otherSys)} (user ${p(otherUser)}, system ${p(otherSys)}; threads ended meanwhile not counted); minor faults ${(faults / wallS).toFixed(0)}/s`;
}

export const MiB = 1024 * 1024;

export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) ? v : fallback;
}

export function strArg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
