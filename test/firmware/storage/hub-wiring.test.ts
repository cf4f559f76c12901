import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DurableFs } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { MemoryLogger } from '../../../base/logger.js';
import { StorageWiring } from '../../../firmware/storage/hub-wiring.js';
import type { EscrowPort, RecoveryMaterial } from '../../../firmware/storage/storage.js';

const RELAY = { url: 'http://127.0.0.1:9/', deviceId: 'hub-0001', token: 'd.hub-0001.tok' };

void t.test('start sets up the unlock channel and escrows to the paired phones once', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-wiring-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const log = new MemoryLogger('hub');
  const w = new StorageWiring({ paths: new HostPaths(root), fs: new DurableFs(), logger: log });
  const m: RecoveryMaterial = {
    luksUuid: '0b0e6f7e-3c8c-4a4e-9d7e-1f2a3b4c5d6e',
    recoveryKey: 'ABCD',
    phoneKey: randomBytes(32),
    headerBackup: randomBytes(1000),
  };
  const escrowed: (readonly string[])[] = [];
  const sentTopics: string[] = [];
  const storage = {
    recoveryMaterial: async () => m,
    escrow: async (port: EscrowPort, signal: AbortSignal, o: { recipients: readonly string[] }) => {
      await port.escrow(m, signal, o.recipients);
      escrowed.push(o.recipients);
      return o.recipients;
    },
  } as never;
  const start = () =>
    w.start({
      storage,
      deviceId: 'hub-0001',
      relay: RELAY,
      channel: {
        sendApp: async (topic) => {
          sentTopics.push(topic);
        },
      },
      phones: () => ['p1'],
    });
  const a = start();
  t.equal(start(), a, 'a second start while running joins the first');
  await a;
  t.same(escrowed, [['p1']]);
  t.same(sentTopics.slice(0, 2), ['unlock-key', 'recovery']);
  const ch = await w.store.load();
  t.equal(ch?.luksUuid, m.luksUuid);
  t.equal(ch?.relay.token, RELAY.token);
  t.ok(log.lines.some((l) => l.includes('phone-unlock channel set up')));
  t.notOk(
    log.lines.some((l) => l.includes(RELAY.token)),
    'relay token not logged',
  );
  await w.stop();

  // unlocked() only speaks when a phone's key opened the volume
  await w.unlocked({ state: 'unlocked', mountPoint: '/x', source: 'otp', firstBoot: false });
  await w.unlocked({ state: 'locked', reason: 'no-key', detail: '', waitingFor: [] });
  // a phone unlock: confirmed in the background, never failing the boot
  await w.unlocked({ state: 'unlocked', mountPoint: '/x', source: 'phone', firstBoot: false });
  await w.confirmed;
  t.notOk(log.lines.some((l) => l.includes('could not confirm')));
});
