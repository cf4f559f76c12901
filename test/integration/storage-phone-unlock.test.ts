/**
 * Phone unlock end to end: a hub-side storage whose volume no longer opens
 * with its OTP key (locked), the phone-unlock channel kept outside the volume,
 * a real relay on loopback, and the companion's unlock code with the material
 * it received in escrow. Wrong keys, replayed answers and answers sealed to
 * another hub are refused with specific reasons (hub log + signed status to
 * the phone); the right answer unlocks and mounts.
 *
 * LUKS and block devices are the in-memory fakes (device-mapper exists only
 * in the VM; test/system/scenarios/storage-phone-unlock.sh runs this on real
 * dm-crypt).
 */
import t from 'tap';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FakeLuks } from '../../hw/luks/fake.js';
import { FakeBlockDevices } from '../../hw/luks/fake-block.js';
import { DurableFs } from '../../hw/os/fs.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import { MemoryLogger, SILENT } from '../../base/logger.js';
import {
  OtpKeySource,
  PhoneKeySource,
  SimulatedOtpDeriver,
} from '../../firmware/storage/key-sources.js';
import { createStorage } from '../../firmware/storage/storage.js';
import type { StorageStatus } from '../../firmware/storage/storage.js';
import { RelayPhoneUnlock, UnlockChannelStore } from '../../firmware/storage/phone-unlock.js';
import { escrowMessages } from '../../firmware/storage/escrow.js';
import { RecoveryVault } from '../../app/recovery.js';
import { PhoneUnlocker } from '../../app/unlock.js';
import { devPairRelay, saveAccount } from '../../app/account.js';
import { command as appCommand } from '../../app/cli.js';
import { startRelay } from '../../relay/server.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { generateX25519 } from '../../protocol/unlock.js';
import { tempDir } from '../relay/fixtures.js';

const DEV = '/dev/vdb1';
const DEVICE_ID = 'hub-unlock-0001';

// Deadlines for a loaded machine (CI: load about 12 on two cores; each key try is a real
// LUKS2 open): they end a stuck test, they do not pace it.
const PATIENCE_MS = 180_000;

async function until(pred: () => boolean, what: string, ms = PATIENCE_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

void t.test('a locked hub is unlocked by its phone over the relay', async (t) => {
  const { dir: root, cleanup } = await tempDir('vigil-phone-unlock-');
  t.teardown(cleanup);
  const relay = await startRelay({ dataDir: join(root, 'relay'), logger: SILENT });
  t.teardown(() => relay.close());
  const accounts = await devPairRelay(relay.url, DEVICE_ID);

  // ---- the hub: first boot with its OTP key
  const paths = new HostPaths(join(root, 'hub'));
  const fs = new DurableFs();
  const luks = new FakeLuks();
  const block = new FakeBlockDevices(luks, join(root, 'stash'));
  block.addDisk({ path: DEV, partLabel: 'vigil-data', partUuid: 'abcd-03', content: 'zero' });
  const otpFile = join(root, 'otp.hex');
  await writeFile(otpFile, 'a1'.repeat(32));
  await mkdir(paths.provisioningDir, { recursive: true });
  await writeFile(join(paths.provisioningDir, 'device.json'), '{}\n');
  const log = new MemoryLogger('hub');
  const store = new UnlockChannelStore({ paths, fs });
  const port = new RelayPhoneUnlock({
    channel: () => store.load(),
    logger: log,
    pollWaitMs: 500,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  const make = () =>
    createStorage({
      luks,
      block,
      fs,
      paths,
      logger: log,
      keySources: [new OtpKeySource(new SimulatedOtpDeriver(otpFile)), new PhoneKeySource(port)],
      readCpuInfo: async () => 'Features\t: fp asimd\n',
      readMemInfo: async () => 'MemTotal:        437000 kB\n',
      cpuCount: 4,
      config: { pollMs: 50 },
    });
  const first = make();
  t.match(await first.unlockAndMount(new AbortController().signal), { state: 'unlocked' });
  const material = await first.recoveryMaterial();
  await writeFile(join(paths.dataMount, 'clip.bin'), 'video');

  // unlocked and paired: the channel file outside the volume, escrow to the phone
  const { channel } = await store.ensure({
    deviceId: DEVICE_ID,
    luksUuid: material.luksUuid,
    relay: { url: relay.url, ...accounts.device },
  });
  t.equal((await stat(store.file)).mode & 0o777, 0o600, 'channel file 0600');
  t.notOk(store.file.startsWith(paths.dataMount), 'channel file is outside the volume');
  const onDisk = await readFile(store.file, 'utf8');
  t.notOk(
    onDisk.includes(material.phoneKey.toString()) ||
      onDisk.includes(Buffer.from(material.phoneKey).toString('base64url')),
    'the phone-unlock key is not in the channel file',
  );
  const appDir = join(root, 'app');
  const vault = new RecoveryVault(appDir, fs);
  for (const m of escrowMessages(material, {
    deviceId: DEVICE_ID,
    unlockPublicKey: channel.unlockKey.publicKey,
    signPublicKey: channel.signKey.publicKey,
  }))
    await (m.topic === 'unlock-key'
      ? vault.receiveUnlockKey(m.body)
      : vault.receiveRecovery(m.body));
  const held = await vault.unlock();
  if (held === undefined) throw new Error('no unlock material in the vault');

  // ---- reboot with a wrong OTP key: locked, waiting for the phone
  await block.reboot();
  await writeFile(otpFile, 'b2'.repeat(32));
  const hub = make();
  const events: StorageStatus[] = [];
  hub.onStatus((e) => events.push(e));
  const unlocking = hub.unlockAndMount(new AbortController().signal);
  await until(() => port.challenges.length === 1, 'the first challenge');
  t.match(port.challenges[0]?.reason, /wrong-key/, 'the challenge says why the hub is locked');
  t.ok(events.some((e) => e.state === 'locked' && e.waitingFor.includes('phone')));

  const phoneClient = new RelayClient({ url: relay.url, token: accounts.phone.token });
  const sent: Uint8Array[] = [];
  const recording = {
    list: phoneClient.list.bind(phoneClient),
    readAll: phoneClient.readAll.bind(phoneClient),
    ack: phoneClient.ack.bind(phoneClient),
    postUp: async (group: string, bytes: Uint8Array) => {
      sent.push(bytes);
      return phoneClient.postUp(group, bytes);
    },
  };
  const phoneLog = new MemoryLogger('phone');

  // 1. A phone holding a wrong key: the key is tried, fails, the phone hears "wrong-key".
  const wrong = new PhoneUnlocker({
    client: recording,
    vault: { ...held, phoneKey: randomBytes(32) },
    logger: phoneLog,
  });
  const c1 = await wrong.waitForChallenge(PATIENCE_MS);
  if (c1 === undefined) throw new Error('no challenge reached the phone');
  await wrong.answer(c1);
  const o1 = await wrong.outcome(c1.nonce, PATIENCE_MS);
  t.match(o1, { kind: 'status', status: { state: 'wrong-key', nonce: c1.nonce } });
  await until(() => port.challenges.length === 2, 'a fresh challenge');
  t.ok(
    events.some((e) => e.state === 'locked' && /phone/.test(e.detail)),
    'storage says the phone key did not open it',
  );

  // 2. Replaying that answer: refused (its challenge is spent), the hub stays locked.
  const phone = new PhoneUnlocker({ client: recording, vault: held, logger: phoneLog });
  await phoneClient.postUp('unlock', sent[0] ?? new Uint8Array());
  await until(() => port.refused.length === 1, 'the replay refused');
  t.match(port.refused[0], { code: 'EUNLOCK_STALE' }, 'replay refused as stale');
  t.ok(
    log.lines.some((l) => l.includes('unlock answer refused') && l.includes('EUNLOCK_STALE')),
    'logged with its reason',
  );
  const deadline = Date.now() + PATIENCE_MS;
  while (!phone.statuses.some((s) => s.state === 'refused') && Date.now() < deadline) {
    await phone.poll(1000);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(
    phone.statuses.some((s) => s.state === 'refused' && s.nonce === c1.nonce),
    'the phone is told its replay was refused',
  );

  // 3. An answer sealed to another hub's key: refused.
  const c2 = await phone.waitForChallenge(PATIENCE_MS);
  if (c2 === undefined) throw new Error('no second challenge');
  t.not(c2.nonce, c1.nonce, 'a fresh nonce');
  const other = new PhoneUnlocker({
    client: recording,
    vault: { ...held, unlockPublicKey: generateX25519().publicKey },
    logger: phoneLog,
  });
  await other.answer(c2);
  await until(() => port.refused.length === 2, 'the misdirected answer refused');
  t.match(port.refused[1], { code: 'EUNLOCK_OPEN' });

  // 4. The owner approves with the companion CLI: unlocked and mounted, the phone hears so.
  await saveAccount(fs, appDir, accounts.phone);
  let cliOut = '';
  const cli = appCommand.run({
    argv: ['unlock', '--yes', '--wait', '30', '--dir', appDir],
    env: {},
    stdout: (s) => {
      cliOut += s;
    },
    stderr: (s) => {
      cliOut += s;
    },
  });
  t.match(await unlocking, { state: 'unlocked', source: 'phone' });
  t.equal(await readFile(join(paths.dataMount, 'clip.bin'), 'utf8'), 'video', 'data intact');
  await port.confirmUnlocked();
  t.equal(await cli, 0, cliOut);
  t.match(cliOut, /is locked since .*wrong-key/);
  t.match(cliOut, /hub unlocked/);
  t.equal(port.challenges.length, 2, 'no challenge after the unlock');
  t.equal(c2.nonce, port.challenges[1]?.nonce, 'the CLI answered the outstanding challenge');

  // Secrets never in the logs.
  const all = [...log.lines, ...phoneLog.lines].join('\n');
  t.notOk(all.includes(Buffer.from(material.phoneKey).toString('base64url')), 'no key in logs');
  t.notOk(all.includes(material.recoveryKey), 'no recovery key in logs');
});

void t.test('a hub never set up for phone unlock says so and keeps waiting', async (t) => {
  const { dir: root, cleanup } = await tempDir('vigil-phone-unlock-');
  t.teardown(cleanup);
  const paths = new HostPaths(root);
  const port = new RelayPhoneUnlock({
    channel: () => new UnlockChannelStore({ paths, fs: new DurableFs() }).load(),
    logger: SILENT,
  });
  await t.rejects(port.requestKey('locked', new AbortController().signal), {
    code: 'EUNLOCK_NOT_SET_UP',
  });
});
