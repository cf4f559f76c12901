import t from 'tap';
import type { Test } from 'tap';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FakeLuks } from '../../../hw/luks/fake.js';
import { FakeBlockDevices } from '../../../hw/luks/fake-block.js';
import { CrashController, DurableFs, SimulatedCrash } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { MemoryLogger } from '../../../base/logger.js';
import {
  DevKeyfileSource,
  OtpKeySource,
  PhoneKeySource,
  RecoveryPassphraseSource,
  SimulatedOtpDeriver,
} from '../../../firmware/storage/key-sources.js';
import type { KeySource, PhoneUnlockPort } from '../../../firmware/storage/key-sources.js';
import {
  SUBSYSTEM_NEW,
  SUBSYSTEM_READY,
  createStorage,
  hubUnlockResult,
} from '../../../firmware/storage/storage.js';
import type { StorageStatus } from '../../../firmware/storage/storage.js';

const DEV = '/dev/vdb1';
const OTP_HEX = 'a1'.repeat(32);
const INTEL = 'processor\t: 0\nflags\t\t: fpu sse2 aes avx\n';
const PI4 = 'processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n';

class Phone implements PhoneUnlockPort {
  reasons: string[] = [];
  #resolve: ((k: Uint8Array) => void) | undefined;
  waiting = false;
  requestKey(reason: string, signal: AbortSignal): Promise<Uint8Array> {
    this.reasons.push(reason);
    this.waiting = true;
    return new Promise((resolve, reject) => {
      this.#resolve = resolve;
      signal.addEventListener('abort', () => {
        reject(new Error('aborted'));
      });
    });
  }
  send(k: Uint8Array): void {
    this.waiting = false;
    this.#resolve?.(k);
  }
}

async function world(
  t: Test,
  opts: { content?: 'zero' | 'data' | 'vigil-blank'; fsType?: string } = {},
) {
  const root = await mkdtemp(join(tmpdir(), 'vigil-storage-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const paths = new HostPaths(root);
  const luks = new FakeLuks();
  const block = new FakeBlockDevices(luks, join(root, 'stash'));
  block.addDisk({
    path: DEV,
    partLabel: 'vigil-data',
    partUuid: 'abcd-03',
    content: opts.content ?? 'zero',
    ...(opts.fsType ? { fsType: opts.fsType } : {}),
  });
  const otpFile = join(root, 'otp.hex');
  await writeFile(otpFile, OTP_HEX);
  await mkdir(paths.provisioningDir, { recursive: true });
  const bundle = '{"format":"vigil-provisioning-bundle","secret":"TOPSECRET"}\n';
  await writeFile(join(paths.provisioningDir, 'device.json'), bundle);
  const phone = new Phone();
  const logger = new MemoryLogger();
  const make = (o: { sources?: KeySource[]; crash?: CrashController; cpu?: string } = {}) =>
    createStorage({
      luks,
      block,
      fs: new DurableFs(o.crash),
      paths,
      logger,
      keySources: o.sources ?? [
        new OtpKeySource(new SimulatedOtpDeriver(otpFile)),
        new PhoneKeySource(phone),
      ],
      readCpuInfo: async () => o.cpu ?? PI4,
      readMemInfo: async () => 'MemTotal:        437000 kB\n',
      cpuCount: 4,
      config: { pollMs: 5 },
      random: (n) => new Uint8Array(randomBytes(n)),
    });
  return { root, paths, luks, block, otpFile, phone, logger, make, bundle };
}

const sig = () => new AbortController().signal;
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}

void t.test(
  'first boot formats, completes setup, moves secrets; reboot unlocks with the OTP key',
  async (t) => {
    const w = await world(t);
    const s = w.make();
    const events: StorageStatus[] = [];
    s.onStatus((e) => events.push(e));
    const r = await s.unlockAndMount(sig());
    t.match(r, {
      state: 'unlocked',
      source: 'otp',
      firstBoot: true,
      mountPoint: w.paths.dataMount,
    });
    t.same(w.luks.formats, [DEV], 'formatted once');
    const vol = w.luks.volumes.get(DEV);
    t.equal(vol?.cipher, 'xchacha12,aes-adiantum-plain64', 'Adiantum without AES instructions');
    t.equal(vol?.keySizeBits, 256);
    t.equal(vol?.subsystem, SUBSYSTEM_READY);
    t.same([...(vol?.slots.keys() ?? [])], [0, 1, 2], 'machine, recovery, phone keyslots');
    t.same(vol?.slots.get(0)?.pbkdf, { type: 'pbkdf2', iterations: 1000 });
    t.match(
      vol?.slots.get(1)?.pbkdf,
      { type: 'argon2id', memoryKiB: 109250, parallel: 4 },
      'argon2id sized to a 512 MB board',
    );
    t.ok(events.some((e) => e.state === 'formatting'));
    t.equal(events.at(-1)?.state, 'unlocked');

    // secrets moved in, plaintext gone
    t.equal(await readFile(join(s.secretsDir, 'device.json'), 'utf8'), w.bundle);
    t.same(await readdir(w.paths.provisioningDir), [], 'plaintext provisioning copy removed');
    const rec = await s.readRecord();
    t.equal(rec?.phase, 'ready');
    t.equal(rec?.luksUuid, vol?.uuid);

    const m = await s.recoveryMaterial();
    t.match(m.recoveryKey, /^([0-9A-Z]{4}-){7}[0-9A-Z]{4}$/);
    t.equal(m.phoneKey.length, 32);
    t.ok(m.headerBackup.length > 0);
    t.notOk(
      w.logger.lines.some((l) => l.includes(m.recoveryKey) || l.includes('TOPSECRET')),
      'no secret in logs',
    );

    // write "video", reboot, unlock again
    await writeFile(join(w.paths.dataMount, 'clip.bin'), 'video');
    await w.block.reboot();
    const s2 = w.make();
    const r2 = await s2.unlockAndMount(sig());
    t.match(r2, { state: 'unlocked', source: 'otp', firstBoot: false });
    t.equal(await readFile(join(w.paths.dataMount, 'clip.bin'), 'utf8'), 'video', 'data survives');
    t.same(w.luks.formats, [DEV], 'no second format');

    // already open (e.g. unlocked by the CLI): just mounts
    await w.block.unmount(w.paths.dataMount);
    t.match(await w.make().unlockAndMount(sig()), { state: 'unlocked', source: 'already-open' });
  },
);

void t.test('AES-XTS where the CPU has AES', async (t) => {
  const w = await world(t);
  await w.make({ cpu: INTEL }).unlockAndMount(sig());
  t.equal(w.luks.volumes.get(DEV)?.cipher, 'aes-xts-plain64');
  t.equal(w.luks.volumes.get(DEV)?.keySizeBits, 512);
});

void t.test('wrong OTP key: locked with a clear status; phone unlock opens it', async (t) => {
  const w = await world(t);
  await w.make().unlockAndMount(sig());
  const phoneKey = (await w.make().recoveryMaterial()).phoneKey;
  await w.block.reboot();
  await writeFile(w.otpFile, 'b2'.repeat(32)); // a different board / changed OTP
  const s = w.make();
  const nowait = await s.unlockAndMount(sig(), { wait: false });
  t.match(nowait, { state: 'locked', reason: 'wrong-key', waitingFor: ['phone', 'recovery'] });
  t.match(nowait.state === 'locked' ? nowait.detail : '', /otp: wrong key/);

  const events: StorageStatus[] = [];
  s.onStatus((e) => events.push(e));
  const p = s.unlockAndMount(sig());
  await until(() => w.phone.waiting);
  t.ok(
    events.some((e) => e.state === 'locked'),
    'hub says it is locked while waiting',
  );
  w.phone.send(randomBytes(32)); // wrong one first
  await until(() => w.phone.waiting);
  t.ok(
    events.some((e) => e.state === 'locked' && e.reason === 'wrong-key' && /phone/.test(e.detail)),
  );
  w.phone.send(phoneKey);
  t.match(await p, { state: 'unlocked', source: 'phone' });
});

void t.test('locked hub notices a console unlock and aborts cleanly', async (t) => {
  const w = await world(t);
  await w.make().unlockAndMount(sig());
  const rk = (await w.make().recoveryMaterial()).recoveryKey;
  await w.block.reboot();
  await rm(w.otpFile);
  const hub = w.make();
  const p = hub.unlockAndMount(sig());
  await until(() => w.phone.waiting);
  t.match(hub.status, { state: 'locked', reason: 'no-key' });
  // the console CLI, in another process: typed with lower case and spaces
  const cli = w.make({ sources: [] });
  const typed = rk.toLowerCase().replace(/-/g, ' ') + '\n';
  const bad = await cli.unlockWith(new RecoveryPassphraseSource(async () => 'nope'), sig());
  t.match(bad, { state: 'locked', reason: 'wrong-key' });
  t.match(await cli.unlockWith(new RecoveryPassphraseSource(async () => typed), sig()), {
    state: 'unlocked',
    source: 'recovery',
  });
  t.match(await p, { state: 'unlocked' }, 'the waiting hub picked up the unlocked volume');

  await w.block.reboot();
  const ac = new AbortController();
  const p2 = w.make().unlockAndMount(ac.signal);
  await until(() => w.phone.waiting);
  ac.abort();
  t.match(await p2, { state: 'locked', reason: 'no-key' });
});

void t.test(
  'a key source that failed at boot is asked again: the hub unlocks by itself',
  async (t) => {
    const w = await world(t);
    await w.make().unlockAndMount(sig());
    await w.block.reboot();
    const otp = await readFile(w.otpFile, 'utf8');
    await rm(w.otpFile);
    const hub = w.make();
    const p = hub.unlockAndMount(sig());
    await until(() => w.phone.waiting);
    t.match(hub.status, { state: 'locked', reason: 'no-key' });
    // the OTP answers again (a read that failed once at boot); nobody sends a key
    await writeFile(w.otpFile, otp);
    t.match(await p, { state: 'unlocked', source: 'otp' }, 'no phone, no recovery key');
    t.same(w.luks.formats, [DEV], 'never formatted again');
  },
);

void t.test(
  'corrupt header: locked, never formatted; restore from backup brings the data back',
  async (t) => {
    const w = await world(t);
    const s = w.make();
    await s.unlockAndMount(sig());
    await writeFile(join(w.paths.dataMount, 'clip.bin'), 'video');
    const backup = join(w.root, 'escrowed-header.img');
    await writeFile(backup, (await s.recoveryMaterial()).headerBackup);
    await w.block.reboot();
    w.luks.corruptHeader(DEV);
    const r = await w.make().unlockAndMount(sig(), { wait: false });
    t.match(r, { state: 'locked', reason: 'header-corrupt', waitingFor: ['recovery'] });
    t.same(w.luks.formats, [DEV], 'not formatted');

    // a hub that waits picks up the restored header by itself
    const hub = w.make();
    const p = hub.unlockAndMount(sig());
    await t.rejects(w.make().restoreHeader(join(w.root, 'nope.img')), { code: 'ELUKS_NOT_LUKS' });
    const res = await w.make().restoreHeader(backup);
    t.equal(res.device, DEV);
    t.match(await p, { state: 'unlocked', source: 'otp' });
    t.equal(await readFile(join(w.paths.dataMount, 'clip.bin'), 'utf8'), 'video', 'data intact');
    await t.rejects(w.make().restoreHeader(backup), { code: 'ELUKS_BUSY' }, 'refuses while open');
  },
);

void t.test('header backup of another volume is refused without --force', async (t) => {
  const w = await world(t);
  await w.make().unlockAndMount(sig());
  const other = join(w.root, 'other.img');
  await writeFile(
    other,
    'fake-luks-header-v1' +
      JSON.stringify({ uuid: 'other', slots: [], cipher: 'x', keySizeBits: 256 }),
  );
  await w.block.reboot();
  await t.rejects(w.make().restoreHeader(other), /formatted as/);
});

void t.test('never formats foreign or unknown data', async (t) => {
  for (const [content, fsType, reason] of [
    ['data', undefined, 'foreign-data'],
    ['zero', 'ext4', 'foreign-data'],
  ] as const) {
    const w = await world(t, { content, ...(fsType ? { fsType } : {}) });
    const r = await w.make().unlockAndMount(sig(), { wait: false });
    t.match(r, { state: 'locked', reason });
    t.same(w.luks.formats, [], `${content}/${String(fsType)} not formatted`);
  }
  const blank = await world(t, { content: 'vigil-blank' });
  t.match(
    await blank.make().unlockAndMount(sig()),
    { state: 'unlocked' },
    'the image builder blank marker may be formatted',
  );
});

void t.test('no device, no machine key', async (t) => {
  const w = await world(t);
  w.block.disks.clear();
  t.match(await w.make().unlockAndMount(sig()), {
    state: 'locked',
    reason: 'no-device',
    waitingFor: [],
  });
  const w2 = await world(t);
  await rm(w2.otpFile);
  t.match(await w2.make().unlockAndMount(sig()), { state: 'locked', reason: 'no-machine-key' });
  t.same(w2.luks.formats, []);
});

void t.test('development key file source: works and says so loudly', async (t) => {
  const w = await world(t);
  const kf = join(w.root, 'dev.key');
  await writeFile(kf, randomBytes(32));
  const r = await w.make({ sources: [new DevKeyfileSource(kf, w.logger)] }).unlockAndMount(sig());
  t.match(r, { state: 'unlocked', source: 'dev-keyfile' });
  t.ok(w.logger.lines.some((l) => l.includes('DEVELOPMENT KEY SOURCE') && l.includes('"warn"')));
});

void t.test(
  'crash anywhere in first boot: the next boot completes it without losing secrets or formatting twice',
  async (t) => {
    // learn how many durable crash points a first boot passes
    const probe = await world(t);
    const tracer = new CrashController();
    await probe.make({ crash: tracer }).unlockAndMount(sig());
    const n = tracer.count;
    t.ok(n >= 10, `first boot has ${String(n)} crash points`);
    for (const mode of ['kill', 'power-loss'] as const) {
      for (let at = 1; at <= n; at++) {
        const w = await world(t);
        const crash = new CrashController({ at, mode, delivery: 'throw' });
        const err = await w
          .make({ crash })
          .unlockAndMount(sig())
          .catch((e: unknown) => e);
        t.ok(
          crash.fired && err instanceof SimulatedCrash,
          `crash ${mode}@${String(at)} fired and propagated`,
        );
        await w.block.reboot();
        const r = await w.make().unlockAndMount(sig());
        t.match(r, { state: 'unlocked' }, `${mode}@${String(at)}: recovered`);
        t.equal(w.luks.volumes.get(DEV)?.subsystem, SUBSYSTEM_READY);
        t.ok(
          w.luks.formats.length <= 2,
          `${mode}@${String(at)}: formats ${String(w.luks.formats.length)}`,
        );
        t.equal(
          await readFile(join(w.paths.dataMount, 'provisioning', 'device.json'), 'utf8'),
          w.bundle,
          'secret intact',
        );
        // every keyslot's key is known (no orphan slot from a half-finished step)
        const m = await w.make().recoveryMaterial();
        const vol = w.luks.volumes.get(DEV);
        t.ok(
          await w.luks.testKey(DEV, new TextEncoder().encode(m.recoveryKey)),
          'recovery key opens',
        );
        t.ok(await w.luks.testKey(DEV, m.phoneKey), 'phone key opens');
        t.ok((vol?.slots.size ?? 0) <= 4, 'no pile of orphan keyslots');
      }
    }
  },
);

void t.test(
  'a vigil-new volume of ours that no key opens is re-formatted; a foreign vigil-new one is not',
  async (t) => {
    const w = await world(t);
    w.luks.failNext = { op: 'format:after', error: new Error('power cut inside luksFormat') };
    // simulate: format wrote a header whose keyslot is unusable
    const r1 = await w.make().unlockAndMount(sig());
    t.match(r1, { state: 'locked', reason: 'error' });
    const vol = w.luks.volumes.get(DEV);
    vol?.slots.clear();
    t.equal(vol?.subsystem, SUBSYSTEM_NEW);
    t.match(await w.make().unlockAndMount(sig()), { state: 'unlocked' });
    t.equal(w.luks.formats.length, 2, 'formatted again: it never held data');

    const w2 = await world(t);
    w2.luks.volumes.set(DEV, {
      uuid: 'someone-else',
      label: 'vigil-data',
      subsystem: SUBSYSTEM_NEW,
      cipher: 'aes-xts-plain64',
      keySizeBits: 512,
      sectorSize: 4096,
      slots: new Map(),
      corrupt: false,
      fsType: 'ext4',
    });
    t.match(await w2.make().unlockAndMount(sig(), { wait: false }), {
      state: 'locked',
      reason: 'no-key',
      detail: /has no usable keyslot/,
    });
    t.same(w2.luks.formats, [], 'no record of ours: never formatted');
  },
);

void t.test('escrow is sent once', async (t) => {
  const w = await world(t);
  const s = w.make();
  await s.unlockAndMount(sig());
  const sent: string[] = [];
  const port = { escrow: async (m: { recoveryKey: string }) => void sent.push(m.recoveryKey) };
  t.equal(await s.escrow(port, sig()), true);
  t.equal(await s.escrow(port, sig()), false);
  t.equal(sent.length, 1);
  await s.lock();
  t.equal(await w.block.isMounted(w.paths.dataMount), false);
  t.equal(await w.luks.status('vigil-data'), undefined);
});

void t.test('a mount lock left by a dead process is taken over', async (t) => {
  const w = await world(t);
  const lock = join(w.paths.runDir, 'storage.lock');
  await mkdir(lock, { recursive: true });
  await writeFile(join(lock, 'pid'), '999999999');
  t.match(await w.make().unlockAndMount(sig()), { state: 'unlocked' });
  t.same(await readdir(w.paths.runDir), [], 'lock released');
});

void t.test('result shape for the supervisor', async (t) => {
  t.same(
    hubUnlockResult({ state: 'unlocked', mountPoint: '/d', source: 'otp', firstBoot: false }),
    { ok: true, dataDir: '/d' },
  );
  t.same(
    hubUnlockResult({
      state: 'locked',
      reason: 'wrong-key',
      detail: 'x',
      waitingFor: ['phone', 'recovery'],
    }),
    {
      ok: false,
      reason: 'wrong-key: x',
      waitingFor: 'phone or recovery',
    },
  );
  t.same(hubUnlockResult({ state: 'locked', reason: 'no-device', detail: 'y', waitingFor: [] }), {
    ok: false,
    reason: 'no-device: y',
  });
});
