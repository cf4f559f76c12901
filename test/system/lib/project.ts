/**
 * The project as the guest sees it (/vigil, read-only): everything compiled by tsc
 * (product + guest helpers + .ts scenarios, test/system/tsconfig.guest.json, incremental),
 * package.json, and the production node_modules (native addons built on this host: same
 * Debian 12 amd64 ABI and the same node binary as the guest). Staged with hard links and
 * packed into an ext4 image per run, so the cached guest never changes when the code does.
 */
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { CommandError, run } from '../../../hw/os/run.js';
import { VigilError } from '../../../base/errors.js';

const Lockfile = z.object({
  packages: z.record(
    z.string(),
    z.object({ dev: z.boolean().optional(), link: z.boolean().optional() }).loose(),
  ),
});

export interface StagedProject {
  readonly image: string;
  readonly seconds: number;
  /** tsc's error lines (the code still compiles: tsc emits despite type errors). */
  readonly typeErrors: readonly string[];
  readonly sizeMiB: number;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Top-level production packages per the lockfile: "node_modules/x" and "node_modules/@s/x". */
export async function productionPackages(root: string): Promise<string[]> {
  const lock = Lockfile.parse(JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')));
  const out: string[] = [];
  for (const [key, meta] of Object.entries(lock.packages)) {
    if (!/^node_modules\/(@[^/]+\/)?[^/@][^/]*$/.test(key)) continue;
    if (meta.dev === true || meta.link === true) continue;
    if (await exists(join(root, key))) out.push(key);
  }
  return out.sort();
}

/**
 * Compile into the shared .cache/project/dist (incremental; serialized with flock because
 * several sessions may run the suite at once), then stage and pack into `runDir`.
 */
export async function stageProject(
  root: string,
  systemDir: string,
  cacheDir: string,
  runDir: string,
): Promise<StagedProject> {
  const t0 = Date.now();
  const work = join(cacheDir, 'project');
  await mkdir(work, { recursive: true });
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  let typeErrors: string[] = [];
  try {
    // --noCheck: emit only (the typecheck step checks types); about half the time of a full tsc
    await run(
      'flock',
      [
        join(work, 'tsc.lock'),
        process.execPath,
        tsc,
        '-p',
        join(systemDir, 'tsconfig.guest.json'),
        '--noCheck',
      ],
      { cwd: root, timeoutMs: 10 * 60_000 },
    );
  } catch (err) {
    // exit code 1/2 = type errors, files still emitted; anything else is fatal
    if (!(err instanceof CommandError) || err.failure !== 'exit') throw err;
    typeErrors = (err.stderr + '\n').split('\n').filter((l) => /error TS\d+/.test(l));
  }
  const stage = join(runDir, 'project-stage');
  await rm(stage, { recursive: true, force: true });
  await mkdir(join(stage, 'node_modules'), { recursive: true });
  await run(
    'flock',
    [join(work, 'tsc.lock'), 'cp', '-al', join(work, 'dist'), join(stage, 'dist')],
    {
      timeoutMs: 120_000,
    },
  );
  await copyFile(join(root, 'package.json'), join(stage, 'package.json'));
  const pkgs = await productionPackages(root);
  // group by destination directory so one cp handles many packages
  const byDest = new Map<string, string[]>();
  for (const p of pkgs) {
    const dest = join(stage, dirname(p));
    const list = byDest.get(dest) ?? [];
    list.push(join(root, p));
    byDest.set(dest, list);
  }
  for (const [dest, srcs] of byDest) {
    await mkdir(dest, { recursive: true });
    await run('cp', ['-al', ...srcs, `${dest}/`], { timeoutMs: 120_000 });
  }
  const usedMiB = Number((await run('du', ['-sm', stage])).stdout.toString().split('\t')[0]);
  const sizeMiB = Math.ceil(usedMiB * 1.25) + 64;
  const image = join(runDir, 'project.img');
  await rm(image, { force: true });
  try {
    await run('mkfs.ext4', ['-q', '-F', '-L', 'vigil-project', '-d', stage, image, `${sizeMiB}M`], {
      timeoutMs: 300_000,
    });
  } catch (err) {
    throw new VigilError('ESTAGE', `packing the project image failed`, { cause: err });
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
  return { image, seconds: (Date.now() - t0) / 1000, typeErrors, sizeMiB };
}
