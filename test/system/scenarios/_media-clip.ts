// Helper (not a scenario): what the media scenarios (media-vivid-clip, media-audio-aloop) share.
// A paired companion and the real MLS sealer into a memory sink; waits on the pipeline (its
// events, or its fragment counter: there is no event per fragment); one manual event from the
// trigger to the companion's decrypted clip; ffprobe's JSON of a file.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { check } from '../guest/harness.js';
import { run } from '../../../hw/os/run.js';
import type { MediaEvent, MediaPipeline } from '../../../firmware/media/pipeline.js';
import type { MlsItemSealer } from '../../../firmware/mls/sealer.js';
import type { E2eePhone, OpenedItem } from '../../../app/e2ee/phone.js';
import { loadMlsProfile } from '../../../protocol/mls-profile.js';
import {
  MemorySink,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
} from '../../../dev/fixtures/paired-hub.js';

/** How long a media step may take under qemu TCG on a loaded machine (a deadline, not a pace). */
export const MEDIA_WAIT_MS = 300_000;

/** The next pipeline event that matches `pred`. */
export function waitFor(
  p: MediaPipeline,
  what: string,
  pred: (e: MediaEvent) => boolean,
  ms = MEDIA_WAIT_MS,
): Promise<MediaEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const off = p.on((e) => {
      if (pred(e)) {
        clearTimeout(timer);
        off();
        resolve(e);
      }
    });
  });
}

/** Poll `cond` (for state the pipeline has no event for) until it holds. */
export async function until(what: string, cond: () => boolean, ms = MEDIA_WAIT_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `n` more whole fragments of the running stream than now. */
export async function moreFragments(p: MediaPipeline, n: number, what: string): Promise<void> {
  const from = p.status().counters.fragments;
  await until(what, () => p.status().counters.fragments >= from + n);
}

export interface PairedSealer {
  readonly phone: E2eePhone;
  readonly sink: MemorySink;
  readonly sealer: MlsItemSealer;
}

/** A hub with one paired companion (in memory), its sealer writing into a memory sink. */
export async function pairedSealer(prefix: string): Promise<PairedSealer> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  const profile = await loadMlsProfile();
  const hub = await openHub(profile, join(root, 'hub'));
  const paired = await pair({
    p: profile,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone'),
  });
  check(paired.phone !== undefined, 'pairing failed');
  const sink = new MemorySink();
  return { phone: paired.phone, sink, sealer: sealerFor(hub, sink) };
}

export interface ManualClip {
  readonly closed: Extract<MediaEvent, { type: 'clip-closed' }>;
  readonly opened: OpenedItem;
  /** The decrypted clip, written to `file`. */
  readonly file: string;
}

/**
 * One manual event of `eventMs` (the guest's test pictures have no scripted motion): waits for
 * its clip to close and be sealed, then the companion decrypts it into `file`. Call it once the
 * stream has fragments (the clip then has its pre-roll).
 */
export async function manualClip(
  p: MediaPipeline,
  s: PairedSealer,
  eventMs: number,
  file: string,
): Promise<ManualClip> {
  const clipClosed = waitFor(p, 'clip-closed', (e) => e.type === 'clip-closed');
  p.trigger(eventMs);
  const closed = await clipClosed;
  await p.idle();
  check(closed.type === 'clip-closed', 'no clip');
  const clipId = s.sink.order.find((id) => s.sink.items.get(id)?.kind === 'clip');
  check(clipId !== undefined, 'no sealed clip reached the sink');
  const opened = await s.phone.decryptItem(s.sink.bytes(clipId));
  await writeFile(file, opened.plaintext);
  return { closed, opened, file };
}

/** ffprobe's JSON for `entries` (e.g. "format=duration:stream=codec_name") of `file`. */
export async function ffprobe<T>(file: string, entries: string): Promise<T> {
  const probe = await run(
    'ffprobe',
    ['-v', 'error', '-show_entries', entries, '-of', 'json', file],
    { timeoutMs: MEDIA_WAIT_MS },
  );
  return JSON.parse(probe.stdout.toString()) as T;
}
