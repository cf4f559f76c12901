import t from 'tap';
import { randomBytes } from 'node:crypto';
import { MemoryLogger } from '../../../base/logger.js';
import { ConfigEscrowPort, escrowMessages, runEscrow } from '../../../firmware/storage/escrow.js';
import type { RecoveryMaterial } from '../../../firmware/storage/storage.js';
import { decodeRecoveryMessage, decodeUnlockKeyEscrow } from '../../../protocol/unlock.js';

const material = (headerBytes: number): RecoveryMaterial => ({
  luksUuid: '0b0e6f7e-3c8c-4a4e-9d7e-1f2a3b4c5d6e',
  recoveryKey: 'ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789',
  phoneKey: randomBytes(32),
  // like a LUKS2 backup: JSON metadata (compressible) + random keyslot area
  headerBackup: Buffer.concat([Buffer.alloc(headerBytes / 2), randomBytes(headerBytes / 2)]),
});
const keys = {
  deviceId: 'hub-0001',
  unlockPublicKey: randomBytes(32),
  signPublicKey: randomBytes(32),
};

void t.test('escrow messages: unlock key, manifest, then chunks that fit', async (t) => {
  const m = material(600_000);
  const msgs = escrowMessages(m, keys, { chunkBytes: 100_000, id: 'ab'.repeat(16), now: 5 });
  t.equal(msgs[0]?.topic, 'unlock-key');
  const uk = decodeUnlockKeyEscrow(msgs[0]?.body ?? new Uint8Array());
  t.equal(uk.phoneKey, Buffer.from(m.phoneKey).toString('base64url'));
  t.equal(uk.luksUuid, m.luksUuid);
  const man = decodeRecoveryMessage(msgs[1]?.body ?? new Uint8Array());
  if (man.t !== 'manifest') throw new Error('expected a manifest');
  t.equal(man.manifest.recoveryKey, m.recoveryKey);
  t.equal(man.manifest.headerSize, 600_000);
  t.ok(man.manifest.compressedSize < 400_000, 'zeros deflated');
  t.equal(msgs.length, 2 + man.manifest.chunks);
  t.ok(
    msgs.every((x) => x.body.length <= 100_000 + 200),
    'chunk payload + small head',
  );
  const indices = msgs.slice(2).map((x) => {
    const c = decodeRecoveryMessage(x.body);
    return c.t === 'chunk' ? c.head.index : -1;
  });
  t.same(indices, [...Array(man.manifest.chunks).keys()]);
});

void t.test('the port sends every message to each named phone, in order', async (t) => {
  const sent: [string, string | undefined][] = [];
  const port = new ConfigEscrowPort(
    {
      sendApp: async (topic, _body, phoneId) => {
        sent.push([topic, phoneId]);
      },
    },
    async () => keys,
  );
  await port.escrow(material(1000), new AbortController().signal, ['p1', 'p2']);
  t.same(sent, [
    ['unlock-key', 'p1'],
    ['recovery', 'p1'],
    ['recovery', 'p1'],
    ['unlock-key', 'p2'],
    ['recovery', 'p2'],
    ['recovery', 'p2'],
  ]);
  sent.length = 0;
  await port.escrow(material(1000), new AbortController().signal);
  t.same(
    sent.map((s) => s[1]),
    [undefined, undefined, undefined],
    'broadcast without ids',
  );
  const ac = new AbortController();
  ac.abort();
  await t.rejects(port.escrow(material(1000), ac.signal));
});

void t.test('runEscrow retries until the material went out, then stops', async (t) => {
  const log = new MemoryLogger('hub');
  let calls = 0;
  const storage = {
    escrow: async (_p: unknown, _s: AbortSignal, o: { recipients: readonly string[] }) => {
      calls += 1;
      if (calls < 3) throw new Error('relay said no');
      return o.recipients;
    },
  } as unknown as Parameters<typeof runEscrow>[0]['storage'];
  await runEscrow({
    storage,
    port: { escrow: async () => undefined },
    phones: () => ['p1'],
    logger: log,
    signal: new AbortController().signal,
    retryMs: 5,
  });
  t.equal(calls, 3);
  t.equal(log.lines.filter((l) => l.includes('will retry')).length, 2);
  t.ok(log.lines.some((l) => l.includes('recovery material escrowed')));

  // no phone paired yet: nothing to do
  calls = 0;
  await runEscrow({
    storage,
    port: { escrow: async () => undefined },
    phones: () => [],
    logger: log,
    signal: new AbortController().signal,
  });
  t.equal(calls, 0);

  // aborted while waiting to retry
  const ac = new AbortController();
  const failing = {
    escrow: async () => {
      throw new Error('down');
    },
  } as unknown as Parameters<typeof runEscrow>[0]['storage'];
  const p = runEscrow({
    storage: failing,
    port: { escrow: async () => undefined },
    phones: () => ['p1'],
    logger: log,
    signal: ac.signal,
    retryMs: 60_000,
  });
  setTimeout(() => {
    ac.abort();
  }, 20);
  await p;
  t.pass('returns on abort');
});
