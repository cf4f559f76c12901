/**
 * The child of bench/hub-floor.ts (bundled with esbuild, run by plain node with
 * --expose-gc): loads what the recording hub loads (media pipeline, uplink,
 * retention, MLS hub and sealer, the MLS profile), collects garbage twice and
 * prints one JSON line of its resident memory. With `http URL` as its arguments
 * it then makes the uplink's kind of request (a 64 KiB PUT, a JSON answer) to URL
 * through base/http.ts and prints a second line; with `undici URL` the same through
 * the platform fetch (what the hub loaded before it had its own client).
 */
import { readFileSync } from 'node:fs';
import '../firmware/media/pipeline.js';
import '../firmware/uplink/uplink.js';
import '../firmware/storage/hub-retention.js';
import '../firmware/mls/hub.js';
import '../firmware/mls/sealer.js';
import { loadMlsProfile } from '../protocol/mls-profile.js';
import { httpRequest } from '../base/http.js';

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
const [how, url] = process.argv.slice(2);
const body = new Uint8Array(64 * 1024);
if (how === 'http' && url !== undefined) {
  await (await httpRequest(url, { method: 'PUT', body })).json();
  sample('http');
} else if (how === 'undici' && url !== undefined) {
  await (await fetch(url, { method: 'PUT', body })).json();
  sample('undici');
}
if (profile.crypto !== 'native') process.stderr.write(`profile: ${profile.crypto}\n`);
