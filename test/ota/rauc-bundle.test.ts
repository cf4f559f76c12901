// OS bundles with the real `rauc` on the host (Debian's 1.8, .ci/apt-packages.txt): built from
// a card image with the real partition table, signed with a development CMS key, checked
// against a keyring; a bundle signed by another key is refused by RAUC.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { makeOsImage } from '../../dev/fixtures/os-image.js';
import { run } from '../../hw/os/run.js';
import { RaucCli, RaucError } from '../../ota/rauc.js';
import {
  buildRootfsBundle,
  bundleHook,
  makeDevSigningKey,
  readMbrPartitions,
  slotCmdline,
} from '../../ota/rauc-bundle.js';
import { CARD_PARTITIONS } from '../../protocol/card-layout.js';
import { tempDir } from './helpers.js';

t.test('the image MBR read back: the layout the image builder planned', async (tt) => {
  const dir = await tempDir('vigil-rauc-mbr-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const { image, layout } = await makeOsImage({ dir, version: '1.0.0' });
  const parts = await readMbrPartitions(image);
  tt.same(
    parts.map((p) => p.number),
    layout.partitions.map((p) => p.number).sort((a, b) => a - b),
  );
  for (const p of layout.partitions) {
    const got = parts.find((x) => x.number === p.number);
    if (p.role === 'extended') continue;
    tt.equal(got?.offset, p.startMiB * 1024 * 1024, `${p.role} offset`);
    tt.equal(got?.length, p.sizeMiB * 1024 * 1024, `${p.role} length`);
  }
  await writeFile(join(dir, 'junk.img'), Buffer.alloc(4096));
  await tt.rejects(readMbrPartitions(join(dir, 'junk.img')), /no MBR\/EBR signature at LBA 0/);
});

t.test('slot command lines follow the slot', async (tt) => {
  const base = 'console=ttyS0,115200 root=PARTUUID=5649474c-05 rootfstype=ext4 rw rauc.slot=A\n';
  tt.equal(
    slotCmdline(base, 'b'),
    'console=ttyS0,115200 rootfstype=ext4 rw root=PARTUUID=5649474c-06 rauc.slot=B\n',
  );
  tt.match(slotCmdline(base, 'a'), /root=PARTUUID=5649474c-05 rauc\.slot=A\n$/);
  tt.match(bundleHook(), /! -name autoboot\.txt/, 'the hook keeps autoboot.txt');
  tt.match(
    bundleHook(),
    /! -name vigil-ab\.json ! -name tryboot\.flag ! -name vigil-os\.json /,
    "and the backend's state, the flag and the OS agent's trial record (its bad versions)",
  );
  tt.notMatch(bundleHook(), /mkfs/, 'the hook never reformats a boot FAT');
});

t.test('a signed verity bundle from the image; another key is refused', async (tt) => {
  const dir = await tempDir('vigil-rauc-bundle-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const { image } = await makeOsImage({
    dir,
    version: '2.0.0',
    // incompressible content: squashfs must not shrink the bundle below RAUC's minimum
    files: {
      '/usr/share/vigil/blob': Buffer.from(
        Array.from({ length: 65536 }, (_, i) => (i * 7919) % 251),
      ),
    },
  });
  const dev = await makeDevSigningKey(join(dir, 'keys'), 'dev');
  const other = await makeDevSigningKey(join(dir, 'keys'), 'other');
  const out = join(dir, 'vigil-os-2.0.0.raucb');
  const r = await buildRootfsBundle({
    image,
    board: 'qemu-amd64',
    version: '2.0.0',
    cert: dev.cert,
    key: dev.key,
    out,
    workDir: join(dir, 'work'),
  });
  tt.equal(r.out, out);
  tt.ok(r.bytes > 0 && r.bytes < r.rootfsBytes, 'squashfs compresses the root filesystem');

  const info = await new RaucCli({ keyring: dev.cert }).info(out);
  tt.same(info, { compatible: 'vigil-qemu-amd64', version: '2.0.0', images: ['rootfs', 'boot'] });

  const refused = await new RaucCli({ keyring: other.cert }).info(out).catch((e: unknown) => e);
  tt.type(refused, RaucError);
  tt.equal((refused as RaucError).failure, 'signature', 'RAUC refuses the CMS signature');
  tt.match((refused as RaucError).message, /^rauc info: .*signature/);

  // The boot archive RAUC installs through the hook: both command lines, no autoboot.txt.
  const x = join(dir, 'x');
  await run('unsquashfs', ['-q', '-n', '-d', x, out], { timeoutMs: 120_000 });
  const names = (await run('tar', ['-tf', join(x, 'boot.tar')])).stdout.toString().split('\n');
  tt.ok(names.includes('cmdline-A.txt') && names.includes('cmdline-B.txt'));
  tt.notOk(
    names.some((n) => /autoboot|cmdline\.txt/.test(n)),
    names.join(' '),
  );
  tt.match(
    await readFile(join(x, 'manifest.raucm'), 'utf8'),
    /\[image\.boot\][^[]*filename=boot\.tar[^[]*hooks=install/,
  );
  tt.equal(
    (await readFile(join(x, 'rootfs.ext4'))).length,
    (await readMbrPartitions(image)).find((p) => p.number === CARD_PARTITIONS['root-a'])?.length,
    'the rootfs image is root A byte for byte in size',
  );
});

t.test(
  'another root image, uncompressed squashfs (the VM scenario: cheap under TCG)',
  async (tt) => {
    const dir = await tempDir('vigil-rauc-rootfs-');
    tt.teardown(() => rm(dir, { recursive: true, force: true }));
    const { image } = await makeOsImage({ dir, version: '1.0.0' });
    // a root that is not root A: 8 MiB of a repeating pattern (squashfs would compress it)
    const root = join(dir, 'other-root.ext4');
    await writeFile(root, Buffer.alloc(8 * 2 ** 20, 'vigil-'));
    const dev = await makeDevSigningKey(join(dir, 'keys'), 'dev');
    const build = (mksquashfsArgs?: string) =>
      buildRootfsBundle({
        image,
        rootfs: root,
        board: 'qemu-amd64',
        version: '1.1.0',
        cert: dev.cert,
        key: dev.key,
        out: join(dir, `b-${mksquashfsArgs === undefined ? 'default' : 'plain'}.raucb`),
        workDir: join(dir, 'work'),
        ...(mksquashfsArgs !== undefined ? { mksquashfsArgs } : {}),
      });
    const plain = await build('-noI -noD -noF -noX -no-duplicates');
    tt.equal(plain.rootfsBytes, 8 * 2 ** 20, 'the given root, not root A');
    const packed = await build();
    tt.ok(
      plain.bytes > 8 * 2 ** 20 && packed.bytes < 2 ** 20,
      `uncompressed ${String(plain.bytes)} bytes, default ${String(packed.bytes)} bytes`,
    );
    const x = join(dir, 'x');
    await run('unsquashfs', ['-q', '-n', '-d', x, plain.out], { timeoutMs: 120_000 });
    tt.same(await readFile(join(x, 'rootfs.ext4')), await readFile(root), 'shipped byte for byte');
    tt.same(await new RaucCli({ keyring: dev.cert }).info(plain.out), {
      compatible: 'vigil-qemu-amd64',
      version: '1.1.0',
      images: ['rootfs', 'boot'],
    });
  },
);

t.test(
  "a root slot gets the card's state from the running root (its key material: the data volume)",
  async (tt) => {
    const work = await tempDir('vigil-hook-');
    tt.teardown(() => rm(work, { recursive: true, force: true }));
    const hook = join(work, 'hook.sh');
    await writeFile(hook, bundleHook(), { mode: 0o755 });
    const slot = join(work, 'slot');
    // the running root's /var/lib/vigil, in a private mount namespace (the host's is not touched)
    const script = [
      'set -eu',
      'mount -t tmpfs none /var/lib/vigil',
      'mkdir -p /var/lib/vigil/storage /var/lib/vigil/data /var/lib/vigil/ota',
      'echo salt > /var/lib/vigil/storage/board-key.salt',
      'echo key > /var/lib/vigil/dev-luks.key && chmod 600 /var/lib/vigil/dev-luks.key',
      'echo rec > /var/lib/vigil/data/recording && echo app > /var/lib/vigil/ota/state.json',
      `mkdir -p ${slot}`,
      `RAUC_SLOT_NAME=rootfs.1 RAUC_SLOT_MOUNT_POINT=${slot} ${hook} slot-post-install`,
      // a boot slot's post-install is not this (its install is the slot-install above)
      `RAUC_SLOT_NAME=boot.1 RAUC_SLOT_MOUNT_POINT=${slot}/boot ${hook} slot-post-install`,
    ].join('\n');
    await run('mkdir', ['-p', '/var/lib/vigil']);
    await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], {
      timeoutMs: 60_000,
    });
    const copied = join(slot, 'var/lib/vigil');
    tt.equal(await readFile(join(copied, 'storage/board-key.salt'), 'utf8'), 'salt\n');
    tt.equal(await readFile(join(copied, 'dev-luks.key'), 'utf8'), 'key\n');
    const mode = (await run('stat', ['-c', '%a', join(copied, 'dev-luks.key')])).stdout;
    tt.equal(mode.toString().trim(), '600', 'modes kept');
    const names = (await run('ls', ['-A', copied])).stdout.toString().split('\n').filter(Boolean);
    tt.same(names.sort(), ['dev-luks.key', 'storage'], 'not the data volume, not the app slots');
    tt.notOk(names.includes('boot'), 'a boot slot gets nothing');
  },
);
