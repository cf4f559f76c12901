// `vigil ota release --rootfs` with the real rauc (a card image → signed bundle → TUF target of
// kind rootfs), and `vigil ota rauc-backend` as RAUC runs it, on a host root (VIGIL_ROOT).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { makeOsImage } from '../../dev/fixtures/os-image.js';
import { RaucCli } from '../../ota/rauc.js';
import { makeDevSigningKey } from '../../ota/rauc-bundle.js';
import { autobootTxt } from '../../protocol/card-layout.js';
import { tempDir, vigilOta as vigil } from './helpers.js';

t.test('release --rootfs: a signed RAUC bundle listed as kind rootfs', async (tt) => {
  const work = await tempDir('vigil-os-cli-');
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const repo = join(work, 'repo');
  const keys = join(work, 'keys');
  const pass = join(work, 'pass.txt');
  await writeFile(pass, 'a passphrase\n');
  const init = await vigil([
    'init-repo',
    '--repo',
    repo,
    '--keys',
    keys,
    '--passphrase-file',
    pass,
  ]);
  tt.equal(init.code, 0, init.err);
  const { image } = await makeOsImage({
    dir: work,
    version: '2.0.0',
    files: {
      '/usr/share/blob': Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 31) % 253)),
    },
  });
  const dev = await makeDevSigningKey(join(work, 'rauc'));
  const args = ['--repo', repo, '--keys', keys, '--board', 'qemu-amd64', '--version', '2.0.0'];
  const r = await vigil([
    'release',
    '--rootfs',
    image,
    ...args,
    '--rauc-cert',
    dev.cert,
    '--rauc-key',
    dev.key,
  ]);
  tt.equal(r.code, 0, r.err);
  tt.match(r.out, /released stable\/vigil-rootfs-2\.0\.0\.raucb \(RAUC bundle, \d+ bytes/);
  const targets = JSON.parse(await readFile(join(repo, 'metadata', '2.targets.json'), 'utf8')) as {
    signed: { targets: Record<string, { custom: unknown; hashes: { sha256: string } }> };
  };
  const tgt = targets.signed.targets['stable/vigil-rootfs-2.0.0.raucb'];
  tt.same(tgt?.custom, { vigil: { version: '2.0.0', channel: 'stable', kind: 'rootfs' } });
  const published = join(
    repo,
    'targets',
    'stable',
    `${String(tgt?.hashes.sha256)}.vigil-rootfs-2.0.0.raucb`,
  );
  tt.same(await new RaucCli({ keyring: dev.cert }).info(published), {
    compatible: 'vigil-qemu-amd64',
    version: '2.0.0',
    images: ['rootfs', 'boot'],
  });

  await tt.rejects(vigil(['release', '--rootfs', image, ...args.slice(0, 6), '--version', 'two']), {
    code: 'EUSAGE',
    message: /--version "two" is not x\.y\.z/,
  });
});

t.test("rauc-backend: RAUC's calls on a host root with the twin firmware", async (tt) => {
  const root = await tempDir('vigil-os-root-');
  tt.teardown(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'boot', 'firmware'), { recursive: true });
  await mkdir(join(root, 'proc'), { recursive: true });
  await writeFile(join(root, 'boot', 'firmware', 'autoboot.txt'), autobootTxt('a'));
  await writeFile(join(root, 'proc', 'cmdline'), 'root=x vigil.boot_partition=1 vigil.tryboot=0\n');
  const env = { VIGIL_ROOT: root };
  const call = async (...a: string[]): Promise<string> => {
    const r = await vigil(['rauc-backend', ...a], env);
    tt.equal(r.code, 0, `${a.join(' ')}: ${r.err}`);
    return r.out;
  };
  tt.equal(await call('get-current'), 'A\n');
  await call('set-state', 'B', 'bad');
  await call('set-primary', 'B');
  tt.equal(await call('get-primary'), 'B\n');
  // the harness (playing the firmware) boots B through tryboot
  await writeFile(join(root, 'proc', 'cmdline'), 'root=x vigil.boot_partition=2 vigil.tryboot=1\n');
  tt.equal(await call('get-current'), 'B\n');
  await call('set-state', 'B', 'good');
  tt.equal(
    await readFile(join(root, 'boot', 'firmware', 'autoboot.txt'), 'utf8'),
    autobootTxt('b'),
    'committed',
  );
  await tt.rejects(vigil(['rauc-backend', 'set-state', 'C', 'good'], env), {
    message: /unknown boot name "C"/,
  });
});
