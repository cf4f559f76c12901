/**
 * Stage Vigil for the image: compiled JavaScript (the entry points bundled,
 * image/app-bundle.ts), production node_modules
 * (native addons rebuilt for the board's CPU) and the Node 20 runtime from the
 * npm registry's node-linux-<arch> package, integrity-checked.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, readdir, rm, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError, run, which } from '../hw/os/run.js';
import { VigilError, reasonOf } from '../base/errors.js';
import { bundleApp } from './app-bundle.js';
import type { Board } from './boards.js';
import type { Runner } from './disk.js';

export class AppStageError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EAPPSTAGE', message, options);
    this.name = 'AppStageError';
  }
}

export interface StagedApp {
  /** Directory that becomes /opt/vigil (dist/, node_modules/, package.json). */
  readonly appDir: string;
  /** The node binary for the board. */
  readonly nodeBinary: string;
  /** The unpacked node-linux-<arch> package (bin/node, include/node headers). */
  readonly nodeDir: string;
  readonly warnings: readonly string[];
  /** The source tree that was compiled (an export of `commit`, or the working tree). */
  readonly srcDir: string;
  /** The git commit built; undefined outside a git checkout. */
  readonly commit: string | undefined;
}

export interface ExportedSources {
  readonly srcDir: string;
  readonly commit: string | undefined;
  /** Tracked files differ from the commit: those edits are NOT in the image. */
  readonly dirty: boolean;
}

/**
 * The committed sources of `commit` (default HEAD) unpacked into `dir` (git archive), with
 * the checkout's node_modules linked in for the compiler. An image is built from a commit,
 * never from a half-edited working copy: two builds of one commit are the same image while
 * people keep editing the tree. Outside a git checkout (a release tarball) the tree itself
 * is the source, unless a commit was asked for.
 */
export async function exportSources(o: {
  readonly repo: string;
  readonly dir: string;
  readonly commit?: string;
  readonly runner?: Runner;
}): Promise<ExportedSources> {
  const runner = o.runner ?? run;
  let commit: string;
  try {
    commit = (
      await runner(
        'git',
        ['-C', o.repo, 'rev-parse', '--verify', `${o.commit ?? 'HEAD'}^{commit}`],
        {
          timeoutMs: 30_000,
        },
      )
    ).stdout
      .toString('utf8')
      .trim();
  } catch (e) {
    if (o.commit !== undefined)
      throw new AppStageError(`commit ${o.commit} not found in ${o.repo}`, { cause: e });
    return { srcDir: o.repo, commit: undefined, dirty: false };
  }
  await rm(o.dir, { recursive: true, force: true });
  await mkdir(o.dir, { recursive: true });
  const tar = `${o.dir}.tar`;
  try {
    await runner('git', ['-C', o.repo, 'archive', '--format=tar', '-o', tar, commit], {
      timeoutMs: 5 * 60_000,
    });
    await runner('tar', ['-xf', tar, '-C', o.dir], { timeoutMs: 5 * 60_000 });
  } finally {
    await rm(tar, { force: true });
  }
  await symlink(join(o.repo, 'node_modules'), join(o.dir, 'node_modules'));
  const status = await runner(
    'git',
    ['-C', o.repo, 'status', '--porcelain', '--untracked-files=no'],
    { timeoutMs: 60_000 },
  );
  const dirty = o.commit === undefined && status.stdout.toString('utf8').trim() !== '';
  return { srcDir: o.dir, commit, dirty };
}

/** npm's sha512 integrity string of a file. */
export async function integrityOf(file: string): Promise<string> {
  const h = createHash('sha512');
  h.update(await readFile(file));
  return `sha512-${h.digest('base64')}`;
}

/** Packages under node_modules that carry a binding.gyp (native addons). */
export async function findNativeAddons(nodeModules: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (dir: string, prefix: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      if (name.startsWith('@') && prefix === '') {
        await visit(join(dir, name), `${name}/`);
        continue;
      }
      try {
        await stat(join(dir, name, 'binding.gyp'));
        found.push(`${prefix}${name}`);
      } catch {
        /* not native */
      }
    }
  };
  await visit(nodeModules, '');
  return found;
}

/** Debian multiarch triplet of a board's CPU. */
export function triplet(board: Board): string {
  return board.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
}

/**
 * Environment for node-gyp: the board's Node headers and compiler (a cross
 * compiler for arm64, whose own libc and kernel headers are used), and
 * pkg-config answering from the image's root filesystem, so addons compile
 * against the headers and link against exactly the libraries the image
 * carries (libv4l2 for v4l2-camera-ts).
 */
export function addonBuildEnv(
  board: Board,
  nodeDir: string,
  sysroot: string,
): Record<string, string | undefined> {
  const t = triplet(board);
  const libDir = `${sysroot}/usr/lib/${t}`;
  return {
    ...process.env,
    npm_config_nodedir: nodeDir,
    npm_config_arch: board.nodeArch,
    npm_config_target_arch: board.nodeArch,
    npm_config_build_from_source: 'true',
    CC: `${t}-gcc`,
    CXX: `${t}-g++`,
    // transitive libraries of what pkg-config links (libv4lconvert, libjpeg...) resolve in the image
    LINK: `${t}-g++ -Wl,-rpath-link,${libDir} -Wl,-rpath-link,${sysroot}/lib/${t}`,
    AR: `${t}-ar`,
    CC_host: 'gcc',
    CXX_host: 'g++',
    PKG_CONFIG_SYSROOT_DIR: sysroot,
    PKG_CONFIG_LIBDIR: `${libDir}/pkgconfig:${sysroot}/usr/share/pkgconfig`,
    PKG_CONFIG_PATH: undefined,
  };
}

export interface AddonBuildOptions {
  readonly board: Board;
  readonly appDir: string;
  readonly nodeDir: string;
  readonly sysroot: string;
  readonly log: (line: string) => void;
  readonly runner?: Runner;
}

/** Rebuild every native addon of the staged app for the board; returns their names. */
export async function buildAddons(o: AddonBuildOptions): Promise<string[]> {
  const runner = o.runner ?? run;
  const addons = await findNativeAddons(join(o.appDir, 'node_modules'));
  if (addons.length === 0) return addons;
  const cxx = `${triplet(o.board)}-g++`;
  if ((await which(cxx)) === null) {
    throw new AppStageError(
      `native addons (${addons.join(', ')}) must be built for ${o.board.arch}: ${cxx} is missing (apt-get install g++-${triplet(o.board).replace(/_/g, '-')})`,
    );
  }
  if ((await which('pkg-config')) === null)
    throw new AppStageError('native addons need pkg-config (apt-get install pkg-config)');
  o.log(
    `    building native addons for ${o.board.arch} against the image's libraries: ${addons.join(', ')}`,
  );
  try {
    await runner('npm', ['rebuild', ...addons, '--foreground-scripts', '--loglevel=error'], {
      cwd: o.appDir,
      timeoutMs: 20 * 60_000,
      env: addonBuildEnv(o.board, o.nodeDir, o.sysroot),
    });
  } catch (e) {
    throw new AppStageError(
      `building native addons (${addons.join(', ')}) for ${o.board.arch} failed: ${reasonOf(e)}`,
      { cause: e },
    );
  }
  for (const a of addons) await pruneAddonBuild(join(o.appDir, 'node_modules', a));
  return addons;
}

/** Fetch (or reuse) the node runtime tarball and check its integrity. */
export async function fetchNodeRuntime(
  board: Board,
  cacheDir: string,
  runner: Runner = run,
): Promise<string> {
  const { npmPackage, version, integrity } = board.node;
  await mkdir(cacheDir, { recursive: true });
  const file = join(cacheDir, `${npmPackage}-${version}.tgz`);
  let have: boolean;
  try {
    have = (await integrityOf(file)) === integrity;
  } catch {
    have = false;
  }
  if (!have) {
    await runner(
      'npm',
      ['pack', `${npmPackage}@${version}`, '--pack-destination', cacheDir, '--silent'],
      {
        timeoutMs: 10 * 60_000,
      },
    );
    const got = await integrityOf(file);
    if (got !== integrity) {
      await rm(file, { force: true });
      throw new AppStageError(
        `${npmPackage}@${version} failed its integrity check (got ${got}, pinned ${integrity})`,
      );
    }
  }
  return file;
}

export interface StageAppOptions {
  readonly repo: string;
  /** Commit to build (default HEAD; the working tree outside git). */
  readonly commit?: string;
  readonly board: Board;
  readonly workDir: string;
  readonly cacheDir: string;
  readonly log: (line: string) => void;
  readonly runner?: Runner;
}

export async function stageApp(o: StageAppOptions): Promise<StagedApp> {
  const runner = o.runner ?? run;
  const warnings: string[] = [];
  const appDir = join(o.workDir, 'app');
  const nodePkgDir = join(o.workDir, 'node');
  await rm(appDir, { recursive: true, force: true });
  await rm(nodePkgDir, { recursive: true, force: true });
  await mkdir(appDir, { recursive: true });
  await mkdir(nodePkgDir, { recursive: true });

  // 1. the committed sources, compiled (no source maps: the image carries no sources)
  const src = await exportSources({
    repo: o.repo,
    dir: join(o.workDir, 'src'),
    runner,
    ...(o.commit !== undefined ? { commit: o.commit } : {}),
  });
  if (src.commit === undefined) warnings.push('not a git checkout: building the working tree');
  else
    o.log(
      `    sources: commit ${src.commit.slice(0, 12)}${src.dirty ? ' (uncommitted edits in the working tree are NOT in the image)' : ''}`,
    );
  const tsc = join(o.repo, 'node_modules', '.bin', 'tsc');
  try {
    await runner(
      tsc,
      ['-p', 'tsconfig.build.json', '--outDir', join(appDir, 'dist'), '--sourceMap', 'false'],
      {
        cwd: src.srcDir,
        timeoutMs: 15 * 60_000,
        // 2 = type errors, output written anyway: CI's typecheck step is the gate for those
        okExitCodes: [0, 2],
      },
    ).then((r) => {
      if (r.exitCode === 2)
        warnings.push(
          'tsc reported type errors (JavaScript was still emitted); see `npm run typecheck`',
        );
    });
  } catch (e) {
    throw new AppStageError('compiling the project (tsc -p tsconfig.build.json) failed', {
      cause: e,
    });
  }
  // the two entry points a device runs (the CLI and hub, the OTA launcher), bundled over
  // tsc's output of them: packages and modules in a few files, less memory (issue #19)
  try {
    await bundleApp({ srcDir: src.srcDir, outDir: join(appDir, 'dist') });
  } catch (e) {
    throw new AppStageError(`bundling the app (image/app-bundle.ts) failed: ${reasonOf(e)}`, {
      cause: e,
    });
  }
  // the object detector's model, beside its compiled adapter (hw/detector/onnx-detector.ts;
  // the bundle's chunks in dist/bin/ find it there too)
  await cp(join(src.srcDir, 'hw/detector/models'), join(appDir, 'dist/hw/detector/models'), {
    recursive: true,
  });
  // package.json/lock of the same sources
  for (const f of ['package.json', 'package-lock.json'])
    await cp(join(src.srcDir, f), join(appDir, f));

  // 2. production dependencies exactly as locked; install scripts off (rebuilt below for the board)
  // optional platform packages are chosen for the board's CPU, not the build host's
  const platform = [`--cpu=${o.board.nodeArch}`, '--os=linux', '--libc=glibc'];
  const npmOpts = {
    cwd: appDir,
    timeoutMs: 20 * 60_000,
    env: { ...process.env, npm_config_nodedir: undefined },
  };
  const flags = [
    '--omit=dev',
    '--ignore-scripts',
    ...platform,
    '--no-audit',
    '--no-fund',
    '--loglevel=error',
  ];
  try {
    await runner('npm', ['ci', ...flags], npmOpts);
  } catch (e) {
    if (!(e instanceof CommandError) || !/in sync|npm help ci/.test(e.stderr)) throw e;
    // a lock file npm ci refuses (e.g. optional platform packages missing from the registry):
    // resolve from it with npm install, loudly, rather than not building at all
    warnings.push(
      'package-lock.json is out of sync with package.json (npm ci refused it): production dependencies were resolved with `npm install --no-save`; fix the lock file for a strictly reproducible image',
    );
    await runner('npm', ['install', '--no-save', ...flags], npmOpts);
  }

  // 3. the runtime
  const tgz = await fetchNodeRuntime(o.board, join(o.cacheDir, 'node-runtime'), runner);
  await runner('tar', ['-xzf', tgz, '-C', nodePkgDir, '--strip-components=1', '--no-same-owner'], {
    timeoutMs: 5 * 60_000,
  });
  const nodeBinary = join(nodePkgDir, 'bin', 'node');

  // npm's own bookkeeping is not needed at runtime
  await rm(join(appDir, 'node_modules', '.package-lock.json'), { force: true });
  await prunePrebuiltBinaries(join(appDir, 'node_modules'), o.board.nodeArch);
  return {
    appDir,
    nodeBinary,
    nodeDir: nodePkgDir,
    warnings,
    srcDir: src.srcDir,
    commit: src.commit,
  };
}

/**
 * Packages that ship prebuilt libraries for every platform in their registry tarball
 * (`<pkg>/<dir>/<os>/<arch>/`): keep only linux/<arch>. onnxruntime-node carries ~290 MiB
 * for darwin, win32 and both linux arches; the board needs one (25 MiB on arm64), and the
 * rest would not fit the root slot.
 */
const PREBUILT_TREES: readonly string[] = ['onnxruntime-node/bin/napi-v6'];

export async function prunePrebuiltBinaries(
  nodeModules: string,
  arch: Board['nodeArch'],
): Promise<void> {
  for (const tree of PREBUILT_TREES) {
    const root = join(nodeModules, tree);
    let oses: string[];
    try {
      oses = await readdir(root);
    } catch {
      continue; // the package is not a production dependency (any more)
    }
    for (const os of oses) {
      if (os !== 'linux') {
        await rm(join(root, os), { recursive: true, force: true });
        continue;
      }
      for (const a of await readdir(join(root, os)))
        if (a !== arch) await rm(join(root, os, a), { recursive: true, force: true });
    }
  }
}

/** Keep only build/Release/*.node of an addon: intermediates embed build paths. */
async function pruneAddonBuild(dir: string): Promise<void> {
  const build = join(dir, 'build');
  let entries: string[];
  try {
    entries = await readdir(build);
  } catch {
    return;
  }
  for (const e of entries)
    if (e !== 'Release') await rm(join(build, e), { recursive: true, force: true });
  const rel = join(build, 'Release');
  for (const e of await readdir(rel))
    if (!e.endsWith('.node')) await rm(join(rel, e), { recursive: true, force: true });
}
