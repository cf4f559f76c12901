import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DurableFs } from '../../hw/os/fs.js';
import { SILENT } from '../../base/logger.js';
import { storageAppCommand } from '../../app/unlock-cli.js';
import { RecoveryVault } from '../../app/recovery.js';
import { encodeUnlockKeyEscrow, b64u } from '../../protocol/unlock.js';

void t.test('vigil app unlock / recovery: clear errors before anything is sent', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-ucli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fs = new DurableFs();
  let out = '';
  let err = '';
  const c = {
    dir,
    fs,
    log: SILENT,
    out: (s: string) => {
      out += s;
    },
    err: (s: string) => {
      err += s;
    },
  };
  const acct = {
    url: 'http://127.0.0.1:9',
    deviceId: 'hub-0001',
    phoneId: 'ph-1',
    token: 'p.ph-1.x',
  };
  let synced = 0;
  const deps = {
    needAccount: async () => acct,
    sync: async () => {
      synced += 1;
      throw new Error('relay down');
    },
  };
  await t.rejects(storageAppCommand(c, ['unlock'], new Map([['--wait', '0']]), deps), {
    name: 'UsageError',
  });
  await t.rejects(storageAppCommand(c, ['unlock'], new Map(), deps), { code: 'ENOESCROW' });
  await new RecoveryVault(dir, fs).receiveUnlockKey(
    encodeUnlockKeyEscrow({
      v: 1,
      deviceId: 'hub-9999',
      luksUuid: '0b0e6f7e-3c8c',
      phoneKey: b64u(randomBytes(32)),
      unlockPublicKey: b64u(randomBytes(32)),
      signPublicKey: b64u(randomBytes(32)),
    }),
  );
  await t.rejects(storageAppCommand(c, ['unlock'], new Map(), deps), {
    code: 'ENOESCROW',
    message: /hub-9999/,
  });
  await t.rejects(storageAppCommand(c, ['recovery'], new Map(), deps), { name: 'UsageError' });
  await t.rejects(storageAppCommand(c, ['recovery', 'export-header'], new Map(), deps), {
    name: 'UsageError',
  });
  t.equal(await storageAppCommand(c, ['recovery', 'show'], new Map(), deps), 0);
  t.match(out, /recovery key: {2}\(not received yet\)/);
  t.match(out, /phone unlock: {2}ready/);
  t.match(err, /could not reach the relay/);
  t.equal(synced, 1);
});
