import t from 'tap';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../bin/cli.js';
import { command } from '../../provisioning/cli.js';
import { readBundle } from '../../protocol/provisioning-bundle.js';
import { base32Encode } from '../../protocol/base32.js';
import { deriveIdentity } from '../../protocol/identity.js';
import { encodeQrPayload } from '../../protocol/qr-payload.js';

async function vigil(argv: string[], stderrIsTTY = true) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, 'test', {
    env: {},
    stderrIsTTY,
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
    // not a terminal (a log, a pipe): no progress bar, no carriage returns
    const piped = await vigil(
      ['factory', 'provision', '--count', '2', '--out', join(root, 'p')],
      false,
    );
    t.equal(piped.code, 0);
    t.equal(piped.stderr, '', 'no progress output off a terminal');
    t.notOk(piped.stdout.includes('\r'));
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
      /unknown option --bogus/,
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
  t.ok(help.stdout.startsWith(command.usage.trim()));
  t.match(help.stdout, /Exit codes: 0 success/);
});

void t.test('vigil factory provision: relay and OTA services into every bundle', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-factory-services-'));
  const tokenFile = join(root, 'enroll');
  await writeFile(tokenFile, 'let-me-in-please\n');
  const rootFile = join(root, 'root.json');
  const rootJson = '{"signed":{"_type":"root","version":1},"signatures":[]}';
  await writeFile(rootFile, rootJson);
  const out = join(root, 'batch');
  const r = await vigil([
    'factory',
    'provision',
    '--count',
    '2',
    '--out',
    out,
    '--no-progress',
    '--relay',
    'https://relay.example.net/',
    '--relay-enroll-token-file',
    tokenFile,
    '--ota-repo',
    'https://updates.example.net/vigil',
    '--ota-root',
    rootFile,
    '--ota-channel',
    'beta',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /relay: +https:\/\/relay\.example\.net \(with enrollment token\)/);
  t.match(r.stdout, /ota: +https:\/\/updates\.example\.net\/vigil channel beta/);
  t.notOk((r.stdout + r.stderr).includes('let-me-in-please'), 'the token is never printed');
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
  for (const d of manifest.devices) {
    t.match(d, {
      relay: 'https://relay.example.net',
      otaChannel: 'beta',
      otaRepository: 'https://updates.example.net/vigil',
    });
    const b = (await readBundle(join(out, d.bundle)))!;
    t.same(b.relay, { url: 'https://relay.example.net', enrollToken: 'let-me-in-please' });
    t.same(b.ota, { repositoryUrl: 'https://updates.example.net/vigil', channel: 'beta' });
    t.equal(await readFile(join(out, d.bundle, 'ota-root.json'), 'utf8'), rootJson);
  }
  const csv = await readFile(join(out, 'manifest.csv'), 'utf8');
  t.match(csv.split('\n')[0], /,relay_url,ota_channel,ota_repository$/);
  t.match(
    csv.split('\n')[1],
    /,https:\/\/relay\.example\.net,beta,https:\/\/updates\.example\.net\/vigil$/,
  );
  t.notOk(manifest.devices.some((d: object) => JSON.stringify(d).includes('let-me-in')));
  // without flags: nothing in the bundle, null in the manifest
  const plain = join(root, 'plain');
  t.equal(
    (await vigil(['factory', 'provision', '--count', '1', '--out', plain, '--no-progress'])).code,
    0,
  );
  const pm = JSON.parse(await readFile(join(plain, 'manifest.json'), 'utf8'));
  t.match(pm.devices[0], { relay: null, otaChannel: null, otaRepository: null });
  t.notMatch(await readFile(join(plain, pm.devices[0].bundle, 'device.json'), 'utf8'), /relay|ota/);
});

void t.test(
  'vigil factory provision: bad service flags give one line naming the flag',
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'vigil-factory-bad-'));
    const rootFile = join(root, 'root.json');
    await writeFile(rootFile, '{"signed":{"_type":"root"}}');
    const notRoot = join(root, 'targets.json');
    await writeFile(notRoot, '{"signed":{"_type":"targets"}}');
    const badToken = join(root, 'bad-token');
    await writeFile(badToken, 'has a space\n');
    const base = ['factory', 'provision', '--count', '1', '--no-progress'];
    const cases: [string[], RegExp][] = [
      [
        ['--relay', 'http://relay.example.net'],
        /^vigil factory provision: --relay must be https \(http only to a loopback or link-local address, for development\) \(see vigil factory provision --help\)$/,
      ],
      [
        ['--relay', 'ftp://relay.example.net'],
        /^vigil factory provision: --relay must be https, not ftp \(see vigil factory provision --help\)$/,
      ],
      [
        ['--relay', 'relay.example.net'],
        /^vigil factory provision: --relay is not a URL \(see vigil factory provision --help\)$/,
      ],
      [
        ['--relay-enroll-token-file', badToken],
        /^vigil factory provision: --relay-enroll-token-file needs --relay \(see vigil factory provision --help\)$/,
      ],
      [
        ['--relay', 'https://r.example', '--relay-enroll-token-file', badToken],
        /^vigil factory provision: --relay-enroll-token-file: the token must be printable ASCII without spaces \(see vigil factory provision --help\)$/,
      ],
      [
        ['--relay', 'https://r.example', '--relay-enroll-token-file', join(root, 'absent')],
        /^vigil factory provision: --relay-enroll-token-file: cannot read .*absent \(ENOENT\) \(see vigil factory provision --help\)$/,
      ],
      [
        ['--ota-repo', 'https://u.example'],
        /^vigil factory provision: --ota-repo needs --ota-root/,
      ],
      [
        ['--ota-root', rootFile],
        /^vigil factory provision: --ota-root and --ota-channel need --ota-repo \(see vigil factory provision --help\)$/,
      ],
      [
        ['--ota-repo', 'http://u.example', '--ota-root', rootFile],
        /^vigil factory provision: --ota-repo must be https/,
      ],
      [
        ['--ota-repo', 'https://u.example', '--ota-root', notRoot],
        /^vigil factory provision: --ota-root: .*targets\.json is not TUF root metadata/,
      ],
      [
        ['--ota-repo', 'https://u.example', '--ota-root', rootFile, '--ota-channel', 'Beta'],
        /^vigil factory provision: --ota-channel must be 1-32 of a-z 0-9 -/,
      ],
    ];
    let i = 0;
    for (const [flags, why] of cases) {
      const out = join(root, `b${String(i++)}`);
      const r = await vigil([...base, '--out', out, ...flags]);
      t.equal(r.code, 2, flags.join(' '));
      t.match(r.stderr.split('\n')[0], why);
      t.notOk(r.stderr.includes('has a space'), 'token not echoed');
      await t.rejects(readdir(out), 'no batch made');
    }
  },
);
