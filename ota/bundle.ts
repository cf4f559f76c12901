/**
 * Update bundles: a gzip'd tarball of the hub's application tree — dist/, the
 * production node_modules (from package-lock.json: every package not marked
 * dev), package.json, package-lock.json — plus `vigil-bundle.json` naming
 * kind and version. Reproducible: sorted names, fixed mtime
 * (SOURCE_DATE_EPOCH), owner 0, and gzip without a timestamp.
 */
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { z } from 'zod';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import { run } from '../hw/os/run.js';
import { isVersion } from './version.js';

export const BUNDLE_MANIFEST = 'vigil-bundle.json';

export const BundleManifestSchema = z.object({
  format: z.literal('vigil-bundle/1'),
  kind: z.enum(['app', 'rootfs']),
  version: z.string().refine(isVersion, 'must be a semantic version'),
  entry: z.string(),
});
export type BundleManifest = z.infer<typeof BundleManifestSchema>;

export class BundleError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTABUNDLE', message, options);
    this.name = 'BundleError';
  }
}

const LockSchema = z.object({
  lockfileVersion: z.number().int().min(2),
  packages: z.record(
    z.string(),
    z.looseObject({ dev: z.boolean().optional(), link: z.boolean().optional() }),
  ),
});

/** node_modules/... directories of production packages, from the lockfile. */
export function productionPackages(lockText: string): string[] {
  const lock = LockSchema.parse(JSON.parse(lockText));
  return Object.entries(lock.packages)
    .filter(([path, p]) => path.startsWith('node_modules/') && p.dev !== true && p.link !== true)
    .map(([path]) => path)
    .sort();
}

async function walkFiles(root: string, rel: string, out: string[]): Promise<void> {
  let st;
  try {
    st = await lstat(join(root, rel));
  } catch {
    return; // an optional package not installed on this platform
  }
  out.push(rel);
  if (!st.isDirectory()) return;
  for (const name of (await readdir(join(root, rel))).sort()) {
    const child = `${rel}/${name}`;
    // Nested node_modules are listed by the lockfile on their own (dev ones excluded).
    if (name === 'node_modules') continue;
    await walkFiles(root, child, out);
  }
}

export interface BuildBundleOptions {
  readonly appDir: string;
  readonly out: string;
  readonly fs: DurableFs;
  readonly version?: string;
  readonly sourceDateEpoch?: number;
}

export async function buildAppBundle(
  o: BuildBundleOptions,
): Promise<{ manifest: BundleManifest; bytes: number; files: number }> {
  const pkg = z
    .object({ version: z.string() })
    .parse(JSON.parse(await readFile(join(o.appDir, 'package.json'), 'utf8')));
  const version = o.version ?? pkg.version;
  const manifest = BundleManifestSchema.parse({
    format: 'vigil-bundle/1',
    kind: 'app',
    version,
    entry: 'dist/bin/vigil.js',
  });
  try {
    await lstat(join(o.appDir, manifest.entry));
  } catch (e) {
    throw new BundleError(`${join(o.appDir, manifest.entry)} is missing: run npm run build first`, {
      cause: e,
    });
  }
  let lockText: string | undefined;
  try {
    lockText = await readFile(join(o.appDir, 'package-lock.json'), 'utf8');
  } catch {
    lockText = undefined;
  }
  const files: string[] = [];
  await walkFiles(o.appDir, 'dist', files);
  for (const f of ['package.json', 'package-lock.json']) await walkFiles(o.appDir, f, files);
  if (lockText !== undefined)
    for (const p of productionPackages(lockText)) await walkFiles(o.appDir, p, files);
  const stage = await mkdtemp(join(tmpdir(), 'vigil-bundle-'));
  try {
    await writeFile(join(stage, BUNDLE_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    const epoch = o.sourceDateEpoch ?? 0;
    const common = [
      '--sort=name',
      `--mtime=@${String(epoch)}`,
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--format=gnu',
    ];
    const a = await run('tar', ['-c', '-f', '-', ...common, '-C', stage, BUNDLE_MANIFEST], {
      maxStdoutBytes: 1 << 20,
    });
    const b = await run(
      'tar',
      ['-c', '-f', '-', ...common, '--no-recursion', '-C', o.appDir, '--null', '-T', '-'],
      {
        stdin: files.map((f) => `${f}\0`).join(''),
        maxStdoutBytes: 2 * 1024 * 1024 * 1024,
        timeoutMs: 10 * 60_000,
      },
    );
    // Two archives concatenated: drop the first one's end-of-archive blocks.
    const first = stripEnd(a.stdout);
    const tarBytes = Buffer.concat([first, b.stdout]);
    const gz = gzipSync(tarBytes, { level: 9 });
    await o.fs.writeFileAtomic(o.out, gz, 'ota-bundle');
    return { manifest, bytes: gz.length, files: files.length + 1 };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** Remove trailing zero blocks (end-of-archive marker and padding) of a tar stream. */
function stripEnd(tar: Buffer): Buffer {
  let end = tar.length;
  while (end >= 512 && tar.subarray(end - 512, end).every((x) => x === 0)) end -= 512;
  return tar.subarray(0, end);
}

/** Read the manifest of a bundle file (gzip'd tar). */
export async function readBundleManifest(path: string): Promise<BundleManifest> {
  let out: Buffer;
  try {
    out = (await run('tar', ['-xzOf', path, BUNDLE_MANIFEST], { maxStdoutBytes: 64 * 1024 }))
      .stdout;
  } catch (e) {
    throw new BundleError(`${path} is not a Vigil bundle (no ${BUNDLE_MANIFEST})`, { cause: e });
  }
  const r = BundleManifestSchema.safeParse(JSON.parse(out.toString('utf8')));
  if (!r.success)
    throw new BundleError(
      `${path}: invalid ${BUNDLE_MANIFEST} (${r.error.issues[0]?.message ?? ''})`,
    );
  return r.data;
}
