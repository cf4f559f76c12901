import t from 'tap';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../bin/cli.js';
import { command } from '../../provisioning/cli.js';
import { readBundle } from '../../protocol/provisioning-bundle.js';
import { base32Encode } from '../../protocol/base32.js';
import { deriveIdentity } from '../../protocol/identity.js';
import { encodeQrPayload } from '../../protocol/qr-payload.js';

async function vigil(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, 'test', {
    env: {},
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
  });
  return { code, stdout, stderr };
}

void t.test(
  'vigil factory provision: progress on stderr, summary on stdout, no secret anywhere',
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'vigil-factory-'));
    const out = join(root, 'batch');
    const r = await vigil([
      'factory',
      'provision',
      '--count',
      '4',
      '--out',
      out,
      '--batch-id',
      'cli-test',
    ]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /provisioned 4 device\(s\), batch cli-test/);
    t.match(r.stderr, /\[#+\] 100% 4\/4 devices\n$/);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
    for (const d of manifest.devices) {
      const b = (await readBundle(join(out, d.bundle)))!;
      const { wpaPassphrase, mlsPsk } = deriveIdentity(b.secret, b.deviceId);
      for (const s of [
        base32Encode(b.secret),
        Buffer.from(b.secret).toString('hex'),
        wpaPassphrase,
        encodeQrPayload(b),
        Buffer.from(mlsPsk).toString('hex'),
      ]) {
        t.notOk(r.stdout.includes(s) || r.stderr.includes(s), 'secret not printed');
      }
    }
    const again = await vigil(['factory', 'provision', '--count', '1', '--out', out]);
    t.equal(again.code, 2);
    t.match(again.stderr, /already exists; refusing to overwrite/);
    t.equal((await readdir(join(out, 'bundles'))).length, 4, 'existing batch untouched');
    const quiet = await vigil([
      'factory',
      'provision',
      '--count',
      '1',
      '--out',
      join(root, 'q'),
      '--no-progress',
    ]);
    t.equal(quiet.code, 0);
    t.equal(quiet.stderr, '');
  },
);

void t.test('usage errors are one line and exit 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['factory'], /missing subcommand/],
    [['factory', 'frobnicate'], /unknown subcommand "frobnicate"/],
    [['factory', 'provision', '--out', '/tmp/x'], /--count N is required/],
    [['factory', 'provision', '--count', '3'], /--out DIR is required/],
    [['factory', 'provision', '--count', 'ten', '--out', '/tmp/x'], /whole number/],
    [['factory', 'provision', '--count', '0', '--out', '/tmp/x'], /from 1 to 10000/],
    [
      ['factory', 'provision', '--count', '1', '--out', '/tmp/x', '--bogus'],
      /Unknown option '--bogus'/,
    ],
    [
      [
        'factory',
        'provision',
        '--count',
        '1',
        '--out',
        '/tmp/vigil-never-made',
        '--batch-id',
        'a b',
      ],
      /batch id/,
    ],
  ];
  for (const [argv, msg] of cases) {
    const r = await vigil(argv);
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, msg);
    t.equal(r.stderr.trim().split('\n').length, 1);
  }
  const help = await vigil(['factory', '--help']);
  t.equal(help.code, 0);
  t.equal(help.stdout.trim(), command.usage.trim());
});
