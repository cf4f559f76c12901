/**
 * The child of bench/hub-floor.ts (bundled with esbuild, run by plain node with
 * --expose-gc): loads what the recording hub loads (media pipeline, uplink,
 * retention, MLS hub and sealer, the MLS profile), collects garbage twice and
 * prints one JSON line of its resident memory. With `undici` as its argument it
 * then builds a fetch Response (what the uplink's first request to the relay
 * loads) and prints a second line.
 */
import { readFileSync } from 'node:fs';
import '../firmware/media/pipeline.js';
import '../firmware/uplink/uplink.js';
import '../firmware/storage/hub-retention.js';
import '../firmware/mls/hub.js';
import '../firmware/mls/sealer.js';
import { loadMlsProfile } from '../protocol/mls-profile.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

function sample(stage: string): void {
  gc?.();
  gc?.();
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1]);
  const m = process.memoryUsage();
  process.stdout.write(
    `${JSON.stringify({
      stage,
      rss: kib('VmRSS') * 1024,
      anon: kib('RssAnon') * 1024,
      file: kib('RssFile') * 1024,
      heapTotal: m.heapTotal,
      heapUsed: m.heapUsed,
      external: m.external,
    })}\n`,
  );
}

// kept referenced to the end, as the hub keeps its profile
const profile = await loadMlsProfile();
sample('loaded');
if (process.argv[2] === 'undici') {
  Response.json({ ok: true });
  sample('undici');
}
if (profile.crypto !== 'native') process.stderr.write(`profile: ${profile.crypto}\n`);
