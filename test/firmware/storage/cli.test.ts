import t from 'tap';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { UsageError } from '../../../base/command.js';
import type { CommandContext } from '../../../base/command.js';
import { command, makeCommand, readPassphrase } from '../../../firmware/storage/cli.js';
import { CryptsetupLuks } from '../../../hw/luks/cryptsetup.js';
import { SecretFiles } from '../../../hw/luks/secret-files.js';
import { FakeLuks } from '../../../hw/luks/fake.js';
import { FakeBlockDevices } from '../../../hw/luks/fake-block.js';
import { DurableFs } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { which } from '../../../hw/os/run.js';
import { MemoryLogger } from '../../../base/logger.js';
import { OtpKeySource, SimulatedOtpDeriver } from '../../../firmware/storage/key-sources.js';
import { createStorage } from '../../../firmware/storage/storage.js';

const haveCryptsetup = (await which('cryptsetup')) !== null;

function ctxFor(argv: string[], env: NodeJS.ProcessEnv) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CommandContext = { argv, env, stdout: (s) => out.push(s), stderr: (s) => err.push(s) };
  return { ctx, out, err };
}

void t.test(
  'status and header restore on a real LUKS file',
  { skip: haveCryptsetup ? false : 'no cryptsetup' },
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'vigil-storage-cli-'));
    const shm = await mkdtemp('/dev/shm/vigil-storage-cli-');
    t.teardown(() =>
      Promise.all([
        rm(root, { recursive: true, force: true }),
        rm(shm, { recursive: true, force: true }),
      ]),
    );
    const img = join(root, 'data.img');
    await writeFile(img, '');
    await truncate(img, 24 * 1024 * 1024);
    const env = {
      PATH: process.env.PATH,
      VIGIL_ROOT: root,
      VIGIL_STORAGE_DEVICE: img,
      VIGIL_KEY_DIR: shm,
      VIGIL_OTP: `simulated:${join(root, 'otp.hex')}`,
    };

    let r = ctxFor(['status', '--json'], env);
    t.equal(await command.run(r.ctx), 3, 'not unlocked -> 3');
    t.match(JSON.parse(r.out.join('')), {
      device: img,
      headerValid: false,
      luks: null,
      open: false,
      mounted: false,
    });

    const luks = new CryptsetupLuks({ secretFiles: new SecretFiles({ baseDir: shm }) });
    const key = randomBytes(32);
    await luks.format(img, key, {
      cipher: 'aes-xts-plain64',
      keySizeBits: 512,
      pbkdf: { type: 'pbkdf2', iterations: 1000 },
      subsystem: 'vigil-ready',
    });

    r = ctxFor(['status'], env);
    t.equal(await command.run(r.ctx), 3);
    t.match(r.out.join(''), /LUKS header: valid \(.*vigil-ready, aes-xts-plain64, 1 keyslot/);

    const backup = join(root, 'hdr.img');
    r = ctxFor(['recovery', 'backup-header', '--to', backup], env);
    t.equal(await command.run(r.ctx), 0);
    const fh = await open(img, 'r+');
    await fh.write(Buffer.alloc(32768, 1), 0, 32768, 0);
    await fh.close();
    r = ctxFor(['status'], env);
    await command.run(r.ctx);
    t.match(r.out.join(''), /LUKS header: missing or corrupt/);

    const notHeader = join(root, 'junk.img');
    await writeFile(notHeader, 'junk');
    r = ctxFor(['recovery', 'restore-header', '--from', notHeader], env);
    await t.rejects(command.run(r.ctx), { code: 'ELUKS_NOT_LUKS' }, 'a non-header is refused');

    r = ctxFor(['recovery', 'restore-header', '--from', backup], env);
    t.equal(await command.run(r.ctx), 0);
    t.match(r.out.join(''), /header restored on/);
    t.equal(await luks.testKey(img, key), true, 'the volume opens again');

    await t.rejects(command.run(ctxFor(['recovery', 'restore-header'], env).ctx), UsageError);
    await t.rejects(command.run(ctxFor(['recovery', 'backup-header'], env).ctx), UsageError);
    await t.rejects(command.run(ctxFor(['recovery'], env).ctx), UsageError);
    await t.rejects(command.run(ctxFor(['bogus'], env).ctx), UsageError);
    await t.rejects(command.run(ctxFor([], env).ctx), UsageError);
    await t.rejects(command.run(ctxFor(['status', '--nope'], env).ctx), UsageError);
    await t.rejects(command.run(ctxFor(['retention'], env).ctx), UsageError);
    await t.rejects(
      command.run(ctxFor(['status'], { ...env, VIGIL_KEY_SOURCES: 'otp,magic' }).ctx),
      /unknown key source/,
    );
  },
);

void t.test('unlock --recovery reads the key from stdin and unlocks', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-storage-cli-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const paths = new HostPaths(root);
  const luks = new FakeLuks();
  const block = new FakeBlockDevices(luks, join(root, 'stash'));
  block.addDisk({ path: '/dev/vdb1', partLabel: 'vigil-data', content: 'zero' });
  const otp = join(root, 'otp.hex');
  await writeFile(otp, '11'.repeat(32));
  const mk = (withOtp: boolean) =>
    createStorage({
      luks,
      block,
      fs: new DurableFs(),
      paths,
      logger: new MemoryLogger(),
      keySources: withOtp ? [new OtpKeySource(new SimulatedOtpDeriver(otp))] : [],
      readCpuInfo: async () => '',
      readMemInfo: async () => '',
    });
  await mk(true).unlockAndMount(new AbortController().signal);
  const rk = (await mk(true).recoveryMaterial()).recoveryKey;
  await block.reboot();

  const run = async (input: string) => {
    const stdin = new PassThrough();
    stdin.end(input);
    const cmd = makeCommand({ makeStorage: async () => mk(false), stdin });
    const c = ctxFor(['unlock', '--recovery'], {});
    return { code: await cmd.run(c.ctx), out: c.out.join('') };
  };
  const bad = await run('not-it\n');
  t.equal(bad.code, 3);
  t.match(bad.out, /locked: wrong-key/);
  const good = await run(`${rk}\nignored second line`);
  t.equal(good.code, 0);
  t.match(good.out, /unlocked \(recovery\)/);

  const c = ctxFor(['unlock'], {});
  t.equal(await makeCommand({ makeStorage: async () => mk(false) }).run(c.ctx), 0, 'already open');
  const k = ctxFor(['recovery', 'key'], {});
  t.equal(await makeCommand({ makeStorage: async () => mk(false) }).run(k.ctx), 0);
  t.equal(k.out.join(''), `${rk}\n`);
  const l = ctxFor(['lock'], {});
  t.equal(await makeCommand({ makeStorage: async () => mk(false) }).run(l.ctx), 0);
  t.equal(await luks.status('vigil-data'), undefined);
});

void t.test('readPassphrase: terminal without echo, backspace, cancel', async (t) => {
  const mkTty = () => {
    const s = new PassThrough() as PassThrough & {
      isTTY: boolean;
      setRawMode: (on: boolean) => void;
      raw: boolean[];
    };
    s.isTTY = true;
    s.raw = [];
    s.setRawMode = (on) => {
      s.raw.push(on);
    };
    return s;
  };
  const tty = mkTty();
  const prompts: string[] = [];
  const p = readPassphrase(tty, (x) => prompts.push(x));
  tty.write('abcx\u007fd\r');
  t.equal(await p, 'abcd');
  t.same(tty.raw, [true, false], 'raw mode on, then restored');
  t.notOk(prompts.join('').includes('abcd'), 'nothing typed is echoed');

  const tty2 = mkTty();
  const p2 = readPassphrase(tty2, () => undefined);
  tty2.write('ab\u0003');
  await t.rejects(p2, UsageError);

  const tty3 = mkTty();
  const ac = new AbortController();
  const p3 = readPassphrase(tty3, () => undefined, ac.signal);
  ac.abort();
  await t.rejects(p3, UsageError);

  const piped = new PassThrough();
  piped.end('line one\nline two\n');
  t.equal(await readPassphrase(piped, () => undefined), 'line one');
});
