// Storage, phone unlock on real dm-crypt: first boot formats the data partition with the
// (simulated) OTP key; the hub sets up its unlock channel and escrows the phone-unlock key to
// the companion's vault; the OTP key then no longer matches (another board) -> the hub is
// `locked` and posts a signed challenge through a relay running in the guest; a replayed
// answer is refused; `vigil app unlock --yes` (the real CLI, another process) answers -> the
// volume opens, mounts with its data, and the phone is told "hub unlocked".
// @timeout 900
// @disk data 64M
import { mkdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { check, log, scenarioDisk, scenario } from '../guest/harness.js';
import { run } from '../../../hw/os/run.js';
import { DurableFs } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { JsonLogger } from '../../../base/logger.js';
import { createRealStorage } from '../../../firmware/storage/real.js';
import { StorageWiring } from '../../../firmware/storage/hub-wiring.js';
import { escrowMessages } from '../../../firmware/storage/escrow.js';
import { RecoveryVault } from '../../../app/recovery.js';
import { devPairRelay, saveAccount } from '../../../app/account.js';
import { startRelay } from '../../../relay/server.js';
import { RelayClient } from '../../../protocol/relay-client.js';

const OTP_A = 'a5'.repeat(32);
const OTP_B = '0b'.repeat(32);
const DEVICE_ID = 'hub-vm-unlock-01';

async function until(what: string, cond: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

scenario(async () => {
  await run('modprobe', ['dm_crypt']);
  const disk = await realpath(scenarioDisk('data'));
  await run('sfdisk', ['-q', disk], { stdin: 'label: gpt\nstart=2048, name="vigil-data"\n' });
  const part = `${disk}1`;
  await until('the data partition', () => existsSync(part), 10_000);

  const root = '/run/vigil-phone-unlock';
  const paths = new HostPaths(root);
  await mkdir(paths.provisioningDir, { recursive: true });
  await writeFile(join(paths.provisioningDir, 'device.json'), '{"format":"x"}\n');
  await writeFile('/run/otp.hex', OTP_A);
  const logger = new JsonLogger('hub', {
    level: 'info',
    write: (l) => {
      process.stderr.write(l + '\n');
    },
  });
  const fs = new DurableFs();
  const env = {
    VIGIL_OTP: 'simulated:/run/otp.hex',
    VIGIL_STORAGE_CIPHER: 'aes-xts',
    VIGIL_KEY_DIR: '/run/vigil/keys',
    VIGIL_STORAGE_DEVICE: part,
  };
  const wiring = new StorageWiring({ paths, fs, logger, pollWaitMs: 2000 });
  const make = () =>
    createRealStorage({
      paths,
      logger,
      env,
      fs,
      keySources: ['otp', 'phone'],
      phone: wiring.phone,
    });

  // 1. first boot on real dm-crypt
  const first = await make();
  const r1 = await first.unlockAndMount(new AbortController().signal);
  check(r1.state === 'unlocked' && r1.firstBoot, `first boot: ${JSON.stringify(r1)}`);
  await writeFile(join(paths.dataMount, 'keep.txt'), 'keep');
  log('first boot: formatted and mounted');

  // 2. relay in the guest, accounts, unlock channel + escrow to the phone's vault
  const relay = await startRelay({ dataDir: '/run/relay', logger, port: 0 });
  const accounts = await devPairRelay(relay.url, DEVICE_ID);
  const material = await first.recoveryMaterial();
  const { channel } = await wiring.store.ensure({
    deviceId: DEVICE_ID,
    luksUuid: material.luksUuid,
    relay: { url: relay.url, ...accounts.device },
  });
  const appDir = '/run/phone';
  await saveAccount(fs, appDir, accounts.phone);
  const vault = new RecoveryVault(appDir, fs);
  for (const m of escrowMessages(material, {
    deviceId: DEVICE_ID,
    unlockPublicKey: channel.unlockKey.publicKey,
    signPublicKey: channel.signKey.publicKey,
  }))
    await (m.topic === 'unlock-key'
      ? vault.receiveUnlockKey(m.body)
      : vault.receiveRecovery(m.body));
  await first.lock();
  check(!existsSync('/dev/mapper/vigil-data'), 'volume still open after lock');

  // 3. another board's OTP: locked, waiting for the phone
  await writeFile('/run/otp.hex', OTP_B);
  const hub = await make();
  const locked = await hub.unlockAndMount(new AbortController().signal, { wait: false });
  check(
    locked.state === 'locked' &&
      locked.reason === 'wrong-key' &&
      locked.waitingFor.includes('phone'),
    `expected locked/wrong-key waiting for the phone: ${JSON.stringify(locked)}`,
  );
  const unlocking = hub.unlockAndMount(new AbortController().signal);
  await until('a challenge', () => wiring.phone.challenges.length >= 1);
  log(`locked; challenge posted: ${wiring.phone.challenges[0]?.reason ?? ''}`);

  // 4. a replayed answer (recorded from an earlier round) is refused
  const phoneClient = new RelayClient({ url: relay.url, token: accounts.phone.token });
  const { sealAnswer } = await import('../../../protocol/unlock.js');
  const held = await vault.unlock();
  check(held !== undefined, 'vault holds no unlock key');
  const stale = { ...wiring.phone.challenges[0], nonce: 'A'.repeat(43) } as Parameters<
    typeof sealAnswer
  >[0];
  await phoneClient.postUp('unlock', sealAnswer(stale, held.phoneKey, held.unlockPublicKey));
  await until('the stale answer refused', () => wiring.phone.refused.length === 1, 60_000);
  check(
    wiring.phone.refused[0]?.code === 'EUNLOCK_STALE',
    `refusal: ${JSON.stringify(wiring.phone.refused[0])}`,
  );
  check(!existsSync('/dev/mapper/vigil-data'), 'a refused answer opened the volume');

  // 5. the owner approves with the real CLI (another process)
  const cli = run(
    'node',
    ['/vigil/dist/bin/vigil.js', 'app', 'unlock', '--yes', '--wait', '120', '--dir', appDir],
    { timeoutMs: 300_000, okExitCodes: [0, 1, 3] },
  );
  const r2 = await unlocking;
  check(
    r2.state === 'unlocked' && r2.source === 'phone',
    `after phone unlock: ${JSON.stringify(r2)}`,
  );
  await wiring.unlocked(r2);
  await wiring.confirmed;
  const out = await cli;
  const text = out.stdout.toString('utf8');
  log(`vigil app unlock (exit ${out.exitCode}): ${text.trim()}`);
  check(
    out.exitCode === 0 && /hub unlocked/.test(text),
    `phone CLI: exit ${out.exitCode}: ${text} ${out.stderr}`,
  );
  check(existsSync('/dev/mapper/vigil-data'), 'dm-crypt mapping missing');
  check(
    (await readFile(join(paths.dataMount, 'keep.txt'), 'utf8')) === 'keep',
    'data missing after phone unlock',
  );
  await hub.lock();
  await relay.close();
  log('wrong OTP -> locked -> phone unlock over the relay -> unlocked and mounted');
});
