/**
 * Child process for the crash suite's real kills: opens the hub and the phone
 * from disk, crashes (SIGKILL via CrashController 'exit' delivery) at the first
 * point whose label matches VIGIL_CRASH_LABEL on the chosen side, while sealing
 * one clip into a file-backed "upload queue" and letting the phone take it.
 * Usage: tsx e2ee-crash-child.ts <dir> <hub|phone> <label>
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrashController, DurableFs } from '../../hw/os/fs.js';
import type { CiphertextSink } from '../../firmware/items.js';
import type { ItemKind } from '../../protocol/items.js';
import { MlsHub } from '../../firmware/mls/hub.js';
import { MlsItemSealer } from '../../firmware/mls/sealer.js';
import { E2eePhone } from '../../app/e2ee/phone.js';
import { loadMlsProfile } from '../../protocol/mls-profile.js';

const [dir = '', side = 'hub', label = ''] = process.argv.slice(2);
const mode = process.env.VIGIL_CRASH_MODE === 'power-loss' ? 'power-loss' : 'kill';

const handlers: (() => void)[] = [];

/** Dies (SIGKILL, like 'exit' delivery) at the first point with the given label. */
class LabelCrash extends CrashController {
  override point(l: string): void {
    super.point(l);
    if (l !== label) return;
    if (mode === 'power-loss') for (const fn of handlers) fn();
    process.kill(process.pid, 'SIGKILL');
  }
  override registerPowerLossHandler(fn: () => void): void {
    handlers.push(fn);
    super.registerPowerLossHandler(fn);
  }
}

class FileSink implements CiphertextSink {
  #n = 0;
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }
  append(itemId: string, _kind: ItemKind, bytes: Uint8Array, final: boolean): Promise<void> {
    this.#n += 1;
    appendFileSync(
      join(this.dir, `${itemId}.${String(this.#n).padStart(4, '0')}.${final ? 'final' : 'part'}`),
      bytes,
    );
    return Promise.resolve();
  }
}

const p = await loadMlsProfile();
const crash = new LabelCrash();
const hub = await MlsHub.open({
  dir: join(dir, 'hub'),
  fs: new DurableFs(side === 'hub' ? crash : undefined),
  deviceId: 'dev-00112233445566',
  profile: p,
});
const phone = await E2eePhone.open({
  dir: join(dir, 'phone'),
  fs: new DurableFs(side === 'phone' ? crash : undefined),
  profile: p,
});
if (phone === undefined) throw new Error('phone not paired');
const sink = new FileSink(join(dir, 'sink'));
const sealer = new MlsItemSealer({ hub, sink, deviceId: 'dev-00112233445566', chunkSize: 512 });
for (let i = 0; i < 3; i++) {
  const w = await sealer.begin({ kind: 'clip', startedAt: 1_790_000_000_000, codec: 'video/mp4' });
  const payload = Buffer.alloc(1500, i + 1);
  writeFileSync(join(dir, 'sink', `${w.itemId}.payload`), payload);
  await w.write(payload);
  await w.close(100);
  const { readdirSync, readFileSync } = await import('node:fs');
  const parts = readdirSync(join(dir, 'sink'))
    .filter((f) => f.startsWith(w.itemId) && !f.endsWith('.payload'))
    .sort();
  const bytes = Buffer.concat(parts.map((f) => readFileSync(join(dir, 'sink', f))));
  await phone.decryptItem(bytes);
  await phone.acknowledge(w.itemId);
}
console.error(`crash point "${label}" was never reached`);
process.exit(3);
