import t from 'tap';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunOptions } from '../../../hw/os/run.js';
import { CommandError } from '../../../hw/os/run.js';
import { MemoryLogger } from '../../../base/logger.js';
import {
  BoardSerialOtpDeriver,
  DevKeyfileSource,
  OTP_LUKS_LABEL,
  OtpKeySource,
  PhoneKeySource,
  RecoveryPassphraseSource,
  RpiFwCryptoOtpDeriver,
  SimulatedOtpDeriver,
  VcmailboxOtpDeriver,
  parseBoardSerial,
  parseVcmailboxOtp,
  recoveryCandidates,
} from '../../../firmware/storage/key-sources.js';

const sig = () => new AbortController().signal;
const REPLY = (tag: string, words: string[]) =>
  `0x00000040 0x80000000 ${tag} 0x00000028 0x80000028 0x00000000 0x00000008 ${words.join(' ')} 0x00000000\n`;
const W = [
  '0x01020304',
  '0x05060708',
  '0x090a0b0c',
  '0x0d0e0f10',
  '0x11121314',
  '0x15161718',
  '0x191a1b1c',
  '0x1d1e1f20',
];

void t.test('vcmailbox reply parsing', async (t) => {
  const b = parseVcmailboxOtp(REPLY('0x00030021', W), 0x00030021);
  t.same([...(b ?? [])].slice(0, 5), [1, 2, 3, 4, 5]);
  t.equal(b?.length, 32);
  t.equal(parseVcmailboxOtp('garbage', 0x00030021), undefined);
  t.equal(parseVcmailboxOtp(REPLY('0x00030021', W.slice(0, 3)), 0x00030021), undefined, 'short');
  t.equal(
    parseVcmailboxOtp(REPLY('0x00030021', W).replace('0x80000028', '0x00000028'), 0x00030021),
    undefined,
    'no response bit',
  );
});

void t.test(
  'vcmailbox deriver: key from OTP rows, blank OTP gives none, the secret never in argv',
  async (t) => {
    const calls: { cmd: string; args: readonly string[] }[] = [];
    let reply = REPLY('0x00030021', W);
    const runner = async (cmd: string, args: readonly string[]) => {
      calls.push({ cmd, args });
      return { stdout: Buffer.from(reply), stderr: '', exitCode: 0 };
    };
    const d = new VcmailboxOtpDeriver({ runner });
    const k1 = await d.derive(OTP_LUKS_LABEL);
    t.equal(k1?.length, 32);
    t.same(await d.derive(OTP_LUKS_LABEL), k1, 'deterministic');
    t.notSame(await d.derive('other label'), k1, 'bound to the label');
    t.same(calls[0], {
      cmd: 'vcmailbox',
      args: ['0x00030021', '40', '40', '0', '8', '0', '0', '0', '0', '0', '0', '0', '0'],
    });
    reply = REPLY('0x00030021', Array(8).fill('0x00000000'));
    t.equal(await d.derive(OTP_LUKS_LABEL), undefined, 'unprogrammed OTP');
    const priv = new VcmailboxOtpDeriver({
      region: 'private',
      runner: async (_c, args) => {
        t.equal(args[0], '0x00030081');
        return { stdout: Buffer.from(REPLY('0x00030081', W)), stderr: '', exitCode: 0 };
      },
    });
    t.equal(priv.kind, 'vcmailbox-private');
    t.equal((await priv.derive(OTP_LUKS_LABEL))?.length, 32);
    const failing = new VcmailboxOtpDeriver({
      runner: async () => {
        throw new CommandError({
          command: 'vcmailbox',
          args: [],
          exitCode: null,
          signal: null,
          stderr: '',
          failure: 'spawn',
        });
      },
    });
    t.equal(await failing.derive(OTP_LUKS_LABEL), undefined, 'no vcmailbox: no key');
  },
);

void t.test('rpi-fw-crypto deriver: message on stdin, hex HMAC out', async (t) => {
  let seen: RunOptions | undefined;
  let args: readonly string[] = [];
  const d = new RpiFwCryptoOtpDeriver({
    runner: async (_c, a, o) => {
      seen = o;
      args = a;
      return { stdout: Buffer.from('ab'.repeat(32) + '\n'), stderr: '', exitCode: 0 };
    },
  });
  const k = await d.derive(OTP_LUKS_LABEL);
  t.same(k, new Uint8Array(32).fill(0xab));
  t.equal(seen?.stdin, OTP_LUKS_LABEL);
  t.same(args, ['hmac', '--in', '/dev/stdin', '--key-id', '1', '--outform', 'hex']);
  const bad = new RpiFwCryptoOtpDeriver({
    runner: async () => ({ stdout: Buffer.from('error'), stderr: '', exitCode: 0 }),
  });
  t.equal(await bad.derive('x'), undefined);
  const zero = new RpiFwCryptoOtpDeriver({
    runner: async () => ({ stdout: Buffer.from('00'.repeat(32)), stderr: '', exitCode: 0 }),
  });
  t.equal(await zero.derive('x'), undefined);
  const fail = new RpiFwCryptoOtpDeriver({
    runner: async () => Promise.reject(new Error('no fw')),
  });
  t.equal(await fail.derive('x'), undefined);
  await t.rejects(d.derive(''), { code: 'EOTP' });
});

void t.test('simulated OTP, OTP source, dev keyfile, phone, recovery', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-keys-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = join(dir, 'otp.hex');
  const sim = new SimulatedOtpDeriver(f);
  t.equal(await sim.derive('x'), undefined, 'missing file = blank OTP');
  await writeFile(f, '00'.repeat(32));
  t.equal(await sim.derive('x'), undefined, 'zeros = blank OTP');
  await writeFile(f, 'zz');
  await t.rejects(sim.derive('x'), { code: 'EOTP' });
  await writeFile(f, '42'.repeat(32) + '\n');
  const src = new OtpKeySource(sim);
  const keys = await src.obtain(sig());
  t.equal(keys.length, 1);
  t.same(keys, await new OtpKeySource(new SimulatedOtpDeriver(f)).obtain(sig()));
  t.same(await new OtpKeySource(new SimulatedOtpDeriver(join(dir, 'none'))).obtain(sig()), []);

  const log = new MemoryLogger();
  const dev = new DevKeyfileSource(join(dir, 'dev.key'), log);
  t.same(await dev.obtain(), [], 'no file yet');
  await writeFile(join(dir, 'dev.key'), 'k'.repeat(32));
  t.equal((await dev.obtain())[0]?.length, 32);
  t.ok(
    log.lines.filter((l) => l.includes('DEVELOPMENT KEY SOURCE')).length >= 2,
    'warns at creation and at every use',
  );

  const phone = new PhoneKeySource({
    requestKey: async (reason) => new TextEncoder().encode(`key for ${reason}`),
  });
  phone.setReason('OTP key rejected');
  t.equal(new TextDecoder().decode((await phone.obtain(sig()))[0]), 'key for OTP key rejected');
  t.equal(phone.interactive, true);

  const rec = new RecoveryPassphraseSource(async () => 'abcd efgh jkmn pqrs tvwx yz01 2345 6789\n');
  const c = await rec.obtain(sig());
  t.equal(new TextDecoder().decode(c[0]), 'ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789');
  t.equal(
    new TextDecoder().decode(c[1]),
    'abcd efgh jkmn pqrs tvwx yz01 2345 6789',
    'also as typed (owner passphrase)',
  );
  t.same(recoveryCandidates('\n'), []);
  t.equal(recoveryCandidates('my own passphrase').length, 1);
  t.equal(
    recoveryCandidates('ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789').length,
    1,
    'canonical typed once',
  );
});

void t.test(
  'board-serial key (Debian kernel: OTP serial row + scrypt + per-card salt)',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-board-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    t.same(parseBoardSerial('10000000a1b2c3d4\0'), Buffer.from('10000000a1b2c3d4', 'hex'));
    t.equal(parseBoardSerial('0000000000000000\0'), undefined, 'zero serial = none');
    t.equal(parseBoardSerial('not a serial'), undefined);
    t.equal(parseBoardSerial(''), undefined);
    const cost = { N: 1 << 10, r: 8, p: 1, maxmem: 32 * 1024 * 1024 }; // cheap for the test
    const serialFile = join(dir, 'serial-number');
    const saltFile = join(dir, 'lib', 'board-key.salt');
    const d = new BoardSerialOtpDeriver({ serialFile, saltFile, cost });
    t.equal(await d.derive('x'), undefined, 'no serial in the device tree: no key');
    await writeFile(serialFile, '10000000a1b2c3d4\0');
    const k1 = await d.derive('vigil/luks/data/v1');
    t.equal(k1?.length, 32);
    t.equal((await stat(saltFile)).mode & 0o777, 0o600, 'salt made once, private');
    const salt = await readFile(saltFile);
    t.same(
      await new BoardSerialOtpDeriver({ serialFile, saltFile, cost }).derive('vigil/luks/data/v1'),
      k1,
      'same board + same card = same key (the salt is reused)',
    );
    t.same(await readFile(saltFile), salt, 'salt unchanged');
    t.not(
      Buffer.from((await d.derive('other-label')) ?? []).toString('hex'),
      Buffer.from(k1 ?? []).toString('hex'),
      'label-bound',
    );
    await writeFile(serialFile, '10000000a1b2c3d5\0');
    t.not(
      Buffer.from((await d.derive('vigil/luks/data/v1')) ?? []).toString('hex'),
      Buffer.from(k1 ?? []).toString('hex'),
      'another board, same card: another key',
    );
    await writeFile(saltFile, 'short');
    await t.rejects(
      d.derive('x'),
      { code: 'EOTP', message: /damaged/ },
      'damaged salt is an error',
    );
  },
);
