/**
 * OS update bundle size and download time for a typical update.
 *
 *   npx tsx bench/ota-rootfs-bundle.ts [IMAGE] [BOARD]
 *
 * IMAGE: a card image of `vigil image build` (default: the twin at
 * image/out/qemu-amd64/vigil-qemu-amd64.img when it exists, else a synthetic card
 * whose root holds 96 MiB of mixed content: half compressible text, half random).
 * Builds the signed verity RAUC bundle (as `vigil ota release --rootfs`), with and
 * without RAUC's adaptive block-hash-index, then downloads it through the agent's
 * download path (FetchTransport, resumable, hash-checked) from a loopback server.
 * Prints one line per figure. Run it through /work/wt/heavy --alone.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeOsImage } from '../dev/fixtures/os-image.js';
import { DurableFs } from '../hw/os/fs.js';
import { downloadTarget } from '../ota/download.js';
import { buildRootfsBundle, makeDevSigningKey } from '../ota/rauc-bundle.js';
import { startStaticServer } from '../ota/static-server.js';
import { FetchTransport } from '../ota/transport.js';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

const work = join(tmpdir(), `vigil-bench-os-${String(process.pid)}`);
await mkdir(work, { recursive: true });
try {
  let image = process.argv[2];
  const board = process.argv[3] ?? 'qemu-amd64';
  const twin = 'image/out/qemu-amd64/vigil-qemu-amd64.img';
  if (
    image === undefined &&
    (await access(twin).then(
      () => true,
      () => false,
    ))
  )
    image = twin;
  let source = image ?? '';
  if (image === undefined) {
    const text = Buffer.from(
      'Vigil log line, compressible and repetitive enough. '.repeat(1_000_000),
    );
    image = (
      await makeOsImage({
        dir: work,
        version: '2.0.0',
        rootMiB: 160,
        files: {
          '/usr/share/vigil/text': text.subarray(0, 48 * 1024 * 1024),
          '/usr/lib/vigil/binary': randomBytes(48 * 1024 * 1024),
        },
      })
    ).image;
    source = 'synthetic card (160 MiB root: 48 MiB text + 48 MiB random)';
  }
  console.log(`source: ${source}`);
  const keys = await makeDevSigningKey(join(work, 'keys'));
  const result: Record<string, { bytes: number; seconds: number }> = {};
  for (const adaptive of [false, true]) {
    const out = join(work, `os-${adaptive ? 'adaptive' : 'plain'}.raucb`);
    const t0 = performance.now();
    const r = await buildRootfsBundle({
      image,
      board,
      version: '2.0.0',
      cert: keys.cert,
      key: keys.key,
      out,
      workDir: join(work, 'build'),
      adaptive,
    });
    const seconds = (performance.now() - t0) / 1000;
    result[adaptive ? 'adaptive' : 'plain'] = { bytes: r.bytes, seconds };
    console.log(
      `bundle${adaptive ? ' (adaptive block-hash-index)' : ''}: ${(r.bytes / 2 ** 20).toFixed(1)} MiB from a ${(r.rootfsBytes / 2 ** 20).toFixed(0)} MiB root partition; built in ${seconds.toFixed(1)} s`,
    );
  }

  // Download through the agent's path from a loopback server.
  const file = join(work, 'os-plain.raucb');
  const bytes = await readFile(file);
  const target = {
    length: bytes.length,
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
  };
  const server = await startStaticServer(work);
  try {
    const dest = join(work, 'downloaded.raucb');
    await rm(dest, { force: true });
    const t0 = performance.now();
    await downloadTarget({
      transport: new FetchTransport(),
      fs: new DurableFs(),
      url: `${server.url}/os-plain.raucb`,
      dest,
      target,
    });
    const s = (performance.now() - t0) / 1000;
    const mib = (await stat(dest)).size / 2 ** 20;
    console.log(
      `download (loopback, resumable + SHA-256 checked): ${mib.toFixed(1)} MiB in ${s.toFixed(2)} s (${(mib / s).toFixed(0)} MiB/s)`,
    );
    for (const mbit of [10, 50]) {
      console.log(
        `  at ${String(mbit)} Mbit/s home uplink: ~${((mib * 8 * 1.048576) / mbit / 60).toFixed(1)} min`,
      );
    }
  } finally {
    await server.close();
  }
  console.log(
    'adaptive: RAUC 1.8 uses the block-hash-index only when it streams the bundle itself (HTTP + NBD); ' +
      'Vigil downloads the whole bundle first so TUF verifies it before RAUC sees it, so adaptive mode saves ' +
      `no download here (its index costs ${(((result.adaptive?.bytes ?? 0) - (result.plain?.bytes ?? 0)) / 1024).toFixed(0)} KiB)`,
  );
} finally {
  await rm(work, { recursive: true, force: true });
}
