/**
 * The shipped bundles (image/app-bundle.ts): built from this tree into an app directory laid
 * out as the image stages it (dist/, package.json, node_modules), the bundled CLI answers,
 * finds its tree's package.json from its chunks, and the bundled launcher — what the unit's
 * ExecStart runs — starts the hub, which reaches READY=1 through sd_notify (the unix-dgram
 * addon loaded from a chunk) and reports itself running.
 */
import { mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { build } from 'esbuild';
import { APP_BUNDLE_ENTRIES, HUB_BUNDLE_OPTIONS, bundleApp } from '../../image/app-bundle.js';
import { run } from '../../hw/os/run.js';
import { HUB_GLIBC_TUNABLES, HUB_NODE_FLAGS } from '../../firmware/supervisor/malloc.js';
import { tempDir } from '../ota/helpers.js';
import { ServiceManager } from '../ota/service-manager.js';

const ROOT = join(import.meta.dirname, '..', '..');
const VERSION = '7.7.7-bundle';

async function appTree(t: Test): Promise<{ app: string; files: readonly string[] }> {
  const app = await tempDir('vigil-app-bundle-');
  t.teardown(() => rm(app, { recursive: true, force: true }));
  await writeFile(
    join(app, 'package.json'),
    JSON.stringify({ name: 'vigil', version: VERSION, type: 'module' }),
  );
  await symlink(join(ROOT, 'node_modules'), join(app, 'node_modules'));
  // what tsc wrote before (kept) and an earlier bundle's chunk (removed)
  await mkdir(join(app, 'dist', 'bin'), { recursive: true });
  await writeFile(join(app, 'dist', 'bin', 'rauc-backend.js'), '// tsc\n');
  await writeFile(join(app, 'dist', 'bin', 'hub-ota-ABCD2345.js'), '// an older chunk\n');
  const { files } = await bundleApp({ srcDir: ROOT, outDir: join(app, 'dist') });
  return { app, files };
}

void t.test('entries, chunks beside the CLI, packages inside, no zod translations', async (t) => {
  const { app, files } = await appTree(t);
  for (const e of APP_BUNDLE_ENTRIES)
    t.ok(
      files.some((f) => f.endsWith(`dist/${e.out}.js`)),
      `${e.out}.js written`,
    );
  const bin = await readdir(join(app, 'dist', 'bin'));
  const ota = await readdir(join(app, 'dist', 'ota'));
  t.same(ota, ['launch.js'], 'only the launcher in dist/ota/: its shared code is in dist/bin/');
  t.ok(bin.length > 2, `${String(bin.length)} files in dist/bin/`);
  t.ok(bin.includes('rauc-backend.js'), "tsc's other files stay");
  t.notOk(bin.includes('hub-ota-ABCD2345.js'), "an earlier build's chunk is gone");
  let text = '';
  for (const f of bin.filter((f) => f !== 'rauc-backend.js'))
    text += await readFile(join(app, 'dist', 'bin', f), 'utf8');
  text += await readFile(join(app, 'dist', 'ota', 'launch.js'), 'utf8');
  t.notMatch(text, /from\s*"zod"|import\("zod"\)/, 'zod is bundled in, not imported');
  t.notMatch(text, /from\s*"@hpke\//, '@hpke is bundled in');
  t.notMatch(
    text,
    /"ts-mls"|"ts-mls\//,
    "ts-mls's files are bundled in, not loaded from node_modules",
  );
  t.match(text, /Invalid input/, "zod's English messages are there");
  t.notMatch(text, /Ungültige Eingabe|Entrada inválida/, 'its other languages are not');
  t.match(text, /from\s*"onnxruntime-node"|import\("onnxruntime-node"\)/, 'native addons stay out');
});

void t.test("the bundle's MLS profile needs no node_modules (ts-mls inside)", async (t) => {
  const dir = await tempDir('vigil-app-bundle-mls-');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // the hub's MLS profile built with the shipped options, run where no node_modules is reachable
  await build({
    ...HUB_BUNDLE_OPTIONS,
    stdin: {
      contents: [
        "import { loadMlsProfile } from './protocol/mls-profile.ts';",
        "import { TS_MLS_FILES, importMlsFile } from './protocol/ts-mls-files.ts';",
        'const p = await loadMlsProfile();',
        'for (const f of TS_MLS_FILES) await importMlsFile(f);',
        "const js = await loadMlsProfile({ crypto: 'js' });",
        'console.log(JSON.stringify({ crypto: p.crypto, js: js.crypto, files: TS_MLS_FILES.length }));',
      ].join('\n'),
      resolveDir: ROOT,
      loader: 'ts',
    },
    splitting: true,
    outdir: join(dir, 'dist', 'bin'),
  });
  const r = await run(process.execPath, [join(dir, 'dist', 'bin', 'stdin.js')], {
    timeoutMs: 120_000,
  });
  t.same(JSON.parse(r.stdout.toString()), { crypto: 'native', js: 'js', files: 15 });
});

void t.test('the bundled CLI answers from its own tree', async (t) => {
  const { app } = await appTree(t);
  const cli = join(app, 'dist', 'bin', 'vigil.js');
  const v = await run(process.execPath, [cli, '--version'], { timeoutMs: 120_000 });
  t.equal(v.stdout.toString().trim(), VERSION, "the version of the tree's package.json");
  const help = await run(process.execPath, [cli, 'hub', '--help'], { timeoutMs: 120_000 });
  t.match(help.stdout.toString(), /Usage: vigil hub/);
});

void t.test('the bundled launcher starts the hub: READY=1, status running', async (t) => {
  const { app } = await appTree(t);
  const work = await tempDir('vigil-app-bundle-run-');
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const root = join(work, 'device');
  await mkdir(join(root, 'var/lib/vigil/data'), { recursive: true });
  await writeFile(join(root, 'var/lib/vigil/data/paired.json'), '{}');
  await mkdir(join(root, 'etc/vigil'), { recursive: true });
  const config = join(root, 'etc/vigil/config.json');
  await writeFile(
    config,
    JSON.stringify({ mode: 'development', storage: { dataDir: '/var/lib/vigil/data' } }),
  );
  // as the unit starts it: the hub's node flags, its malloc tunables, the launcher bundle
  const svc = new ServiceManager({
    command: process.execPath,
    args: [
      ...HUB_NODE_FLAGS,
      join(app, 'dist', 'ota', 'launch.js'),
      '--slots',
      join(root, 'opt/vigil'),
      '--',
      'hub',
      '--config',
      config,
      '--root',
      root,
    ],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, GLIBC_TUNABLES: HUB_GLIBC_TUNABLES },
    dir: work,
    watchdogMs: 30_000,
    startTimeoutMs: 300_000,
    maxStarts: 1,
  });
  t.teardown(() => svc.stop());
  svc.start();
  await svc.waitFor((runs) => {
    const r = runs[0];
    return r !== undefined && (r.ready || r.exitCode !== null || r.signal !== null);
  }, 300_000);
  t.equal(svc.runs[0]?.ready, true, 'READY=1 from the bundled hub');
  if (svc.runs[0]?.ready !== true) t.comment(svc.dump());
  t.match(svc.runs[0]?.output ?? '', /"slot":"base"/, 'the launcher ran the base tree');
  const status = await run(
    process.execPath,
    [join(app, 'dist', 'bin', 'vigil.js'), 'hub', 'status', '--root', root, '--json'],
    { timeoutMs: 120_000 },
  );
  const s = JSON.parse(status.stdout.toString()) as { running?: unknown; pid?: unknown };
  t.equal(s.running, true, 'vigil hub status: running');
  t.equal(s.pid, svc.runs[0]?.pid, 'the launcher process is the hub (same PID)');
});
