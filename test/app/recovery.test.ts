import t from 'tap';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DurableFs } from '../../hw/os/fs.js';
import { RecoveryVault, recoveryShow } from '../../app/recovery.js';
import { escrowMessages } from '../../firmware/storage/escrow.js';
import { encodeRecoveryMessage } from '../../protocol/unlock.js';

async function vault(t: { teardown: (f: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-vault-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return { dir, v: new RecoveryVault(dir, new DurableFs(), () => new Date(0)) };
}

const material = () => ({
  luksUuid: '0b0e6f7e-3c8c-4a4e-9d7e-1f2a3b4c5d6e',
  recoveryKey: 'ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789',
  phoneKey: randomBytes(32),
  headerBackup: randomBytes(300_000),
});
const keys = {
  deviceId: 'hub-0001',
  unlockPublicKey: randomBytes(32),
  signPublicKey: randomBytes(32),
};

void t.test('chunks in any order assemble into the header; files are 0600', async (t) => {
  const { dir, v } = await vault(t);
  const m = material();
  const msgs = escrowMessages(m, keys, { chunkBytes: 64 * 1024 });
  await t.rejects(v.exportHeader(join(dir, 'x.img')), { code: 'ENOESCROW' });
  await t.rejects(recoveryShow(v, false), { code: 'ENOESCROW' });
  t.match(await v.receiveUnlockKey(msgs[0]?.body ?? new Uint8Array()), /phone-unlock key/);
  const rest = msgs.slice(1).reverse(); // chunks first, manifest last
  const lines: string[] = [];
  for (const [i, x] of rest.entries()) {
    if (i === 1) await writeFile(join(v.dir, 'incoming', `${'ee'.repeat(16)}.0`), 'stale run');
    lines.push(await v.receiveRecovery(x.body));
  }
  t.same(await readdir(join(v.dir, 'incoming')), [], 'parts and stale runs cleaned up');
  t.match(lines.at(-1), /recovery key and LUKS header backup of hub hub-0001 stored/);
  const out = join(dir, 'header.img');
  const rec = await v.exportHeader(out);
  t.equal(rec.recoveryKey, m.recoveryKey);
  t.same(await readFile(out), m.headerBackup);
  for (const f of ['unlock.json', 'recovery.json', 'luks-header.img'])
    t.equal((await stat(join(v.dir, f))).mode & 0o777, 0o600, f);
  t.equal((await stat(v.dir)).mode & 0o777, 0o700);
  const shown = await recoveryShow(v, false);
  t.match(shown, m.recoveryKey);
  t.match(shown, /phone unlock: {2}ready/);
  t.match(JSON.parse(await recoveryShow(v, true)), {
    recoveryKey: m.recoveryKey,
    phoneUnlock: true,
  });
  t.equal((await v.unlock())?.phoneKey.toString('hex'), m.phoneKey.toString('hex'));

  // a damaged local copy is detected on export
  await writeFile(join(v.dir, 'luks-header.img'), 'x');
  await t.rejects(v.exportHeader(out), { code: 'EESCROW_DIGEST' });
});

void t.test('a run whose parts do not match its manifest is discarded', async (t) => {
  const { v } = await vault(t);
  const msgs = escrowMessages(material(), keys, { chunkBytes: 200_000, id: 'cd'.repeat(16) });
  await v.receiveRecovery(msgs[1]?.body ?? new Uint8Array()); // manifest
  await v.receiveRecovery(msgs[2]?.body ?? new Uint8Array()); // chunk 0
  const bad = encodeRecoveryMessage(
    { v: 1, t: 'chunk', id: 'cd'.repeat(16), index: 1 },
    randomBytes(50),
  );
  await t.rejects(v.receiveRecovery(bad), { code: 'EESCROW_DIGEST' });
  t.equal(await v.recovery(), undefined, 'nothing stored');
  await t.rejects(v.receiveRecovery(Buffer.from([0, 2, 123, 125])), { code: 'EUNLOCK_FORMAT' });
  await t.rejects(v.receiveUnlockKey(Buffer.from('{}')), { code: 'EUNLOCK_FORMAT' });
});
