/**
 * Memory settings for the hub process (issue #19, memory).
 *
 * glibc malloc: the hub moves ~0.5 MiB of video per second through short-lived
 * Buffers (GOPs, 64 KiB sealed records); with glibc's defaults the freed memory
 * stays in the heap and its per-thread arenas between collections (20-30 MiB of
 * RSS). Returning every block of 128 KiB or more to the kernel at once (mmap
 * threshold: the GOP-sized buffers), trimming the heap top past 128 KiB and one
 * arena keep RSS near the live data, while the 64 KiB records and pipe chunks are
 * reused from the heap. Until session 14 the threshold was 32 KiB (records mapped
 * too): on the session-14 machine, where a page fault costs more, that was 4.25 %
 * of one core against 3.57 % at 128 KiB, for 1.0 MiB less RSS (2-minute runs);
 * docs/decisions.md "The hub's mmap threshold: 128 KiB".

 * V8: a young generation of at most 1 MiB per semi-space (V8 grows it up to 16
 * MiB, and the pages it touched stay resident) and `--optimize-for-size` (heap
 * sized for memory rather than speed). With the recording path loaded and the MLS
 * profile in place, the process holds ~60 instead of ~67 MiB (bench/hub-floor.ts);
 * an epoch advance costs the same CPU with and without them. docs/performance.md
 * has the measurements.
 *
 * V8, session 12 (docs/decisions.md "The hub's node flags: flush startup code,
 * scavenge early"): `--bytecode-old-age=1 --flush-baseline-code` drop the bytecode
 * and baseline code of functions that ran once at startup (module bodies, schema
 * builders, the pairing path) after one major GC instead of five (~0.8 MiB of
 * heap); `--minor-gc-task-trigger=20` schedules the idle-time scavenge when the
 * young generation is 20 % full instead of 80 %, so the wrappers of dead video
 * buffers (fragments, rebased copies, sealed records, segments read back for
 * upload: ~0.5 MB/s, each copy held only by its ArrayBuffer) die ~4x sooner and
 * their memory goes back to the kernel: ~1 MiB less ArrayBuffer memory at the
 * median, ~5 MiB less at the peak, no measurable CPU.
 *
 * V8, session 14 (docs/decisions.md "The hub runs without TurboFan"): `--no-opt` keeps
 * V8's optimizing compiler off, so its ~3.7 MiB of the node binary's code is never paged
 * in (file-backed RSS 41.6 -> 37.8 MiB while recording). Rejected in session 12, when every
 * epoch advance ran the X-Wing path in JS; since the advances are pathless (9 in 10) the
 * hub's hot JS is small: the seal path, the advance and the recording hub's CPU measured the
 * same within the run-to-run spread (docs/performance.md, session 14).
 *
 * Both must be set where the process starts: the systemd unit
 * (firmware/supervisor/vigil-hub.service: the environment, and the flags on
 * ExecStart before the script) and the local run (`npm run vigil`, package.json)
 * carry these exact strings; a test keeps them equal.
 */
export const HUB_GLIBC_TUNABLES =
  'glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072:glibc.malloc.arena_max=1';

/** Node/V8 flags for the hub process (not allowed in NODE_OPTIONS: on the command line). */
export const HUB_NODE_FLAGS: readonly string[] = [
  '--optimize-for-size',
  '--max-semi-space-size=1',
  '--bytecode-old-age=1',
  '--flush-baseline-code',
  '--minor-gc-task-trigger=20',
  '--no-opt',
];
