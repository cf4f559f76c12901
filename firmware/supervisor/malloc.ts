/**
 * glibc malloc settings for the hub process (issue #19, memory). The hub moves
 * ~0.5 MiB of video per second through short-lived Buffers (GOPs, 64 KiB
 * sealed records); with glibc's defaults the freed memory stays in the heap
 * and its per-thread arenas between collections (20-30 MiB of RSS). Returning
 * every block of 32 KiB or more to the kernel at once (mmap threshold), trimming
 * the heap top past 32 KiB and one arena keep RSS near the live data.
 * docs/performance.md has the measurements.
 *
 * The environment must be set before the process starts: the systemd unit
 * (firmware/supervisor/vigil-hub.service) and the local run (`npm run vigil`,
 * package.json) carry this exact string; a test keeps them equal.
 */
export const HUB_GLIBC_TUNABLES =
  'glibc.malloc.mmap_threshold=32768:glibc.malloc.trim_threshold=32768:glibc.malloc.arena_max=1';
