// The image area's amd64 twin boots in qemu exactly as built: its own kernel and initrd from
// its boot partition, its own root by PARTUUID, systemd, the first-boot data-partition growth
// and the Vigil supervisor; the twin's report unit (vigil.report=1) prints the hub state and
// the hotspot state on the console (VIGIL-TWIN lines) and powers off.
// Uses image/out/qemu-amd64-ci/build-1 (CI's image step) or image/out/qemu-amd64, building the
// twin when neither exists and VIGIL_IMAGE_CI=1 or VIGIL_TWIN_BUILD=1 (else it is reported as SKIP).
// VIGIL_TWIN_IMAGE=path picks another image.
// Pass: the supervisor reached the pairing state with hostapd up on a hwsim radio, after opening
// LUKS on the data partition and moving the provisioned bundle into it.
// @timeout 1800
import { randomBytes } from 'node:crypto';
import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../../hw/os/run.js';
import { boardOf } from '../../../image/boards.js';
import { buildImage, findRepo } from '../../../image/build.js';
import { fatRead, mtoolsTarget, partitionNumbered, readTable } from '../../../image/disk.js';
import { provisionImage } from '../../../image/provision.js';
import { encodeBundle } from '../../../protocol/provisioning-bundle.js';
import type { HostScenario } from '../lib/types.js';

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

async function twinImage(log: (t: string) => void): Promise<string | undefined> {
  const fromEnv = process.env.VIGIL_TWIN_IMAGE;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const repo = await findRepo();
  for (const p of [
    join(repo, 'image/out/qemu-amd64-ci/build-1/vigil-qemu-amd64.img'),
    join(repo, 'image/out/qemu-amd64/vigil-qemu-amd64.img'),
  ]) {
    if (await exists(p)) return p;
  }
  if (process.env.VIGIL_IMAGE_CI !== '1' && process.env.VIGIL_TWIN_BUILD !== '1') return undefined;
  log('no twin image yet: building one (vigil image build --board qemu-amd64)');
  const r = await buildImage({
    board: boardOf('qemu-amd64'),
    outDir: join(repo, 'image/out/qemu-amd64'),
    kernelSource: 'debian',
    sourceDateEpoch: Number(process.env.SOURCE_DATE_EPOCH ?? '1700000000'),
    compress: false,
    print: log,
    repo,
  });
  return r.image;
}

const scenario: HostScenario = async (h) => {
  const image = await twinImage(h.log);
  if (image === undefined) {
    // building the twin takes ~10 min: only CI's image step (default on) or an explicit
    // VIGIL_TWIN_BUILD=1 pays for it; otherwise this scenario has nothing to boot
    return {
      skip: 'no twin image (the CI image step builds one unless VIGIL_IMAGE_CI=0; or VIGIL_TWIN_BUILD=1, or vigil image build --board qemu-amd64)',
    };
  }
  h.log(`twin image: ${image}`);
  const table = await readTable(image);
  const boot = mtoolsTarget(image, partitionNumbered(table, 1, image));
  const { fatList } = await import('../../../image/disk.js');
  const files = await fatList(boot);
  const kernelName = files.find((f) => f.startsWith('vmlinuz-'));
  const initrdName = files.find((f) => f.startsWith('initrd.img-'));
  if (kernelName === undefined || initrdName === undefined) {
    throw new Error(`boot partition lacks kernel/initrd: ${files.join(', ')}`);
  }
  const kernel = join(h.workDir, kernelName);
  const initrd = join(h.workDir, initrdName);
  await writeFile(kernel, await fatRead(boot, kernelName));
  await writeFile(initrd, await fatRead(boot, initrdName));
  const cmdline = (await fatRead(boot, 'cmdline.txt')).toString('utf8').trim();
  // a card bigger than the image: the first boot must grow the data partition into it
  const disk = join(h.workDir, 'card.img');
  await run('cp', ['--sparse=always', image, disk], { timeoutMs: 10 * 60_000 });
  await run('truncate', ['-s', '+512M', disk]);
  // one device's bundle, as the factory would write it (`vigil image provision`): without an
  // identity the hub cannot open its MLS group nor derive the hotspot's credentials
  const bundle = join(h.workDir, 'bundle');
  await mkdir(bundle, { recursive: true, mode: 0o700 });
  await writeFile(
    join(bundle, 'device.json'),
    encodeBundle({
      deviceId: 'TWINTESTDEVICEAA',
      secret: new Uint8Array(randomBytes(32)),
      batchId: 'twin-boot',
      createdAt: new Date().toISOString(),
    }),
    { mode: 0o600 },
  );
  await provisionImage(disk, bundle);
  try {
    const r = await h.boot({
      kernel,
      initrd,
      append: `${cmdline} vigil.report=1 panic=-1 systemd.show_status=1`,
      disks: [{ file: disk, format: 'raw' }],
      memoryMiB: 1536,
      timeoutMs: 900_000,
      consoleLog: join(h.workDir, 'console.log'),
      doneLine: 'VIGIL-TWIN result=',
    });
    const twin = new Map<string, string>();
    for (const l of r.lines) {
      const m = /VIGIL-TWIN (.*)$/.exec(l);
      if (!m?.[1]) continue;
      for (const kv of m[1].split(' ')) {
        const i = kv.indexOf('=');
        if (i > 0) twin.set(kv.slice(0, i), kv.slice(i + 1));
      }
    }
    if (!r.lines.some((l) => l.includes('Linux version')))
      throw new Error(`the twin's kernel did not start (${r.outcome})`);
    if (twin.size === 0) {
      const failed = r.lines
        .filter((l) => /Failed to start|FAILED|Kernel panic|emergency/i.test(l))
        .slice(0, 3);
      throw new Error(
        `no VIGIL-TWIN report on the console (${r.outcome}); ${failed.join(' | ') || 'no failure lines'}`,
      );
    }
    h.log(`twin report: ${[...twin].map(([k, v]) => `${k}=${v}`).join(' ')} (${r.wallMs} ms)`);
    if ((twin.get('state') ?? 'none') === 'none')
      throw new Error('the supervisor never wrote its status (vigil-hub not running?)');
    if (twin.get('machine-id') !== 'generated')
      throw new Error('systemd did not generate a machine-id on first boot');
    const grown = Number(twin.get('data-grown'));
    const before = table.partitions.find((p) => p.number === 7)?.size ?? 0;
    if (!(grown > before))
      throw new Error(
        `data partition not grown on first boot (${twin.get('data-grown') ?? '?'} sectors, image had ${before})`,
      );
    if (twin.get('data-volume') !== 'open')
      throw new Error('the hub did not open LUKS on the data partition (dev-keyfile key source)');
    if (twin.get('bundle-plaintext') !== 'gone')
      throw new Error('the plaintext provisioning bundle is still on the provisioning partition');
    if (twin.get('result') !== 'ok') {
      throw new Error(
        `hub state ${twin.get('state') ?? '?'}, hostapd ${twin.get('hostapd') ?? '?'}, AP ${twin.get('ap') ?? '?'}: not pairing with a hotspot`,
      );
    }
  } finally {
    await rm(disk, { force: true });
  }
  return undefined;
};
export default scenario;
