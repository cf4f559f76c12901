/**
 * Recovery escrow end to end: storage's recovery material (with a real LUKS2
 * header backup made by cryptsetup on a file) goes through StorageWiring over
 * the real config channel (MLS hub, relay on loopback) to a paired phone; the
 * companion CLI receives it into its vault (`vigil app recovery show`,
 * `export-header`), the hub records the phone as served and does not resend.
 */
import t from 'tap';
import { mkdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FakeLuks } from '../../hw/luks/fake.js';
import { FakeBlockDevices } from '../../hw/luks/fake-block.js';
import { CryptsetupLuks } from '../../hw/luks/cryptsetup.js';
import { CIPHER_PROFILES } from '../../hw/luks/luks.js';
import { SecretFiles } from '../../hw/luks/secret-files.js';
import { which } from '../../hw/os/run.js';
import { DurableFs } from '../../hw/os/fs.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import { MemoryLogger, SILENT } from '../../base/logger.js';
import { OtpKeySource, SimulatedOtpDeriver } from '../../firmware/storage/key-sources.js';
import { RECOVERY_DIR, createStorage } from '../../firmware/storage/storage.js';
import { StorageWiring } from '../../firmware/storage/hub-wiring.js';
import { RelayConfigChannel } from '../../firmware/mls/config-channel.js';
import { RECOVERY_CHUNK_BYTES } from '../../protocol/unlock.js';
import { command as appCommand } from '../../app/cli.js';
import { startRelay } from '../../relay/server.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { DEVICE_ID, pairedOverRelay } from '../../dev/fixtures/paired-hub.js';
import { tempDir } from '../relay/fixtures.js';

const BIN = (await which('cryptsetup')) ?? (await which('/usr/sbin/cryptsetup'));

async function app(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await appCommand.run({
    argv,
    env: {},
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
  });
  return { code, out, err };
}

/** A real LUKS2 header backup: three keyslots of random key material in a 2 MiB area. */
async function realHeader(dir: string): Promise<Buffer> {
  if (BIN === null) throw new Error('no cryptsetup');
  const shm = join('/dev/shm', `vigil-escrow-${randomBytes(6).toString('hex')}`);
  const luks = new CryptsetupLuks({ secretFiles: new SecretFiles({ baseDir: shm }), binary: BIN });
  const img = join(dir, 'data.img');
  await writeFile(img, '');
  await truncate(img, 24 * 1024 * 1024);
  const cheap = { type: 'pbkdf2', iterations: 1000 } as const;
  const k0 = randomBytes(32);
  await luks.format(img, k0, {
    ...CIPHER_PROFILES['aes-xts'],
    pbkdf: cheap,
    keyslotsSizeBytes: 2 * 1024 * 1024,
  });
  await luks.addKey(img, k0, randomBytes(32), { pbkdf: cheap });
  await luks.addKey(img, k0, randomBytes(32), { pbkdf: cheap });
  await luks.headerBackup(img, join(dir, 'header.img'));
  return readFile(join(dir, 'header.img'));
}

void t.test(
  'recovery material reaches the paired phone over the config channel',
  { skip: BIN === null ? 'cryptsetup not installed' : false },
  async (t) => {
    const { dir: root, cleanup } = await tempDir('vigil-escrow-');
    const closers: (() => Promise<void>)[] = [cleanup];
    t.teardown(async () => {
      for (const c of closers) await c().catch(() => undefined);
    });
    const fs = new DurableFs();

    // the hub's volume (fake LUKS; the header backup below is real)
    const paths = new HostPaths(join(root, 'hub'));
    const luks = new FakeLuks();
    const block = new FakeBlockDevices(luks, join(root, 'stash'));
    block.addDisk({ path: '/dev/vdb1', partLabel: 'vigil-data', partUuid: 'p3', content: 'zero' });
    await writeFile(join(root, 'otp.hex'), 'a1'.repeat(32));
    await mkdir(paths.provisioningDir, { recursive: true });
    const storage = createStorage({
      luks,
      block,
      fs,
      paths,
      logger: SILENT,
      keySources: [new OtpKeySource(new SimulatedOtpDeriver(join(root, 'otp.hex')))],
      readCpuInfo: async () => 'flags\t: aes\n',
      readMemInfo: async () => 'MemTotal: 437000 kB\n',
      cpuCount: 2,
      config: { pollMs: 50 },
    });
    t.match(await storage.unlockAndMount(new AbortController().signal), { state: 'unlocked' });
    const header = await realHeader(root);
    t.ok(header.length > 2 * 1024 * 1024, `real header backup: ${header.length} bytes`);
    await writeFile(join(paths.dataMount, RECOVERY_DIR, 'luks-header.img'), header);
    const material = await storage.recoveryMaterial();

    // MLS hub + paired phone (its state in the companion's directory), relay accounts
    const relay = await startRelay({ dataDir: join(root, 'relay'), logger: SILENT });
    closers.unshift(() => relay.close());
    const { hub, phone, appDir, accounts } = await pairedOverRelay({
      root,
      relayUrl: relay.url,
      fs,
      hubDir: join(root, 'mls'),
    });
    t.ok(phone, 'paired');
    const channel = new RelayConfigChannel({
      hub,
      client: new RelayClient({ url: relay.url, token: accounts.device.token }),
      logger: SILENT,
      stateDir: join(root, 'hub-state'),
      fs,
      pollWaitMs: 500,
      backoff: { initialMs: 50, maxMs: 200 },
    });
    channel.start();
    closers.unshift(() => channel.stop());

    const log = new MemoryLogger('hub');
    const wiring = new StorageWiring({ paths, fs, logger: log });
    closers.unshift(() => wiring.stop());
    const sent: { topic: string; bytes: number }[] = [];
    const counting = {
      sendApp: (topic: string, body: Uint8Array, phoneId?: string) => {
        sent.push({ topic, bytes: body.length });
        return channel.sendApp(topic, body, phoneId);
      },
    };
    const phoneIds = () => hub.phones.map((p) => p.phoneId);
    await wiring.start({
      storage,
      deviceId: DEVICE_ID,
      relay: { url: relay.url, ...accounts.device },
      channel: counting,
      phones: phoneIds,
    });
    const chunks = sent.filter((s) => s.topic === 'recovery').length - 1;
    t.ok(chunks >= 2, `header sent in ${chunks} chunks`);
    t.ok(
      sent.every((s) => s.bytes <= RECOVERY_CHUNK_BYTES + 1024),
      'every message fits AppMessage.body',
    );
    const marker = JSON.parse(
      await readFile(join(paths.dataMount, RECOVERY_DIR, 'escrowed.json'), 'utf8'),
    ) as { phones: string[] };
    t.same(marker.phones, phoneIds(), 'the hub remembers which phones have it');
    t.ok((await stat(wiring.store.file)).isFile(), 'unlock channel file written');

    // Nothing is resent to a phone that has it.
    await wiring.stop();
    const before = sent.length;
    await wiring.start({
      storage,
      deviceId: DEVICE_ID,
      relay: { url: relay.url, ...accounts.device },
      channel: counting,
      phones: phoneIds,
    });
    t.equal(sent.length, before, 'not sent twice');

    // The companion receives it through its config-group sync.
    const show = await app(['recovery', 'show', '--json', '--dir', appDir]);
    t.equal(show.code, 0, show.err);
    t.match(JSON.parse(show.out), {
      deviceId: DEVICE_ID,
      luksUuid: material.luksUuid,
      recoveryKey: material.recoveryKey,
      phoneUnlock: true,
    });
    const exported = join(root, 'exported-header.img');
    const ex = await app(['recovery', 'export-header', exported, '--dir', appDir]);
    t.equal(ex.code, 0, ex.err);
    t.same(await readFile(exported), header, 'exported header is byte-identical');
    t.equal((await stat(exported)).mode & 0o777, 0o600);
    t.equal((await stat(join(appDir, 'recovery', 'recovery.json'))).mode & 0o777, 0o600);
    const unlockJson = JSON.parse(
      await readFile(join(appDir, 'recovery', 'unlock.json'), 'utf8'),
    ) as { unlockPublicKey: string; phoneKey: string };
    const ch = await wiring.store.load();
    t.equal(
      unlockJson.unlockPublicKey,
      Buffer.from(ch?.unlockKey.publicKey ?? []).toString('base64url'),
      "the phone holds the hub's unlock public key",
    );
    t.equal(unlockJson.phoneKey, Buffer.from(material.phoneKey).toString('base64url'));
    t.notOk(
      log.lines.some((l) => l.includes(material.recoveryKey)),
      'recovery key never logged',
    );

    // Usage errors are one clear line.
    await t.rejects(app(['recovery', 'nope', '--dir', appDir]), { name: 'UsageError' });
  },
);
