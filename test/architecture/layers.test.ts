// The dependency rule (.dependency-cruiser.cjs, README "Architecture") is
// enforced by `npm run deps`. These tests run the same checker with the same
// configuration: once on the real tree (zero cycles, zero back arrows), and on
// small trees made here, to show that a back arrow, a cross-feature import and
// a cycle each fail the check with the rule's name.
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { Test } from 'tap';
import { run } from '../../hw/os/run.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEPCRUISE = join(ROOT, 'node_modules', '.bin', 'depcruise');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');

async function cruise(cwd: string, dirs: string[]) {
  // depcruise exits with the number of violations: any code is an answer here
  const r = await run(DEPCRUISE, ['--config', CONFIG, '--output-type', 'err', ...dirs], {
    cwd,
    timeoutMs: 240_000,
    okExitCodes: Array.from({ length: 256 }, (_, i) => i),
  });
  return { code: r.exitCode, out: r.stdout.toString('utf8') + r.stderr };
}

t.test('the real tree: no cycles, no back arrows', async (tt) => {
  const r = await cruise(ROOT, [
    'base',
    'bin',
    'dev',
    'bench',
    'firmware',
    'hw',
    'protocol',
    'provisioning',
    'ota',
    'image',
    'app',
    'relay',
    'test',
  ]);
  tt.equal(r.code, 0, r.out);
  tt.match(r.out, /no dependency violations found/);
});

/** A throwaway tree: files (path -> source) plus the project's tsconfig. */
async function tree(tt: Test, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-layers-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  await cp(join(ROOT, 'tsconfig.json'), join(dir, 'tsconfig.json'));
  await cp(join(ROOT, 'package.json'), join(dir, 'package.json'));
  for (const [path, src] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), src);
  }
  return dir;
}

const CASES: { name: string; files: Record<string, string>; rule: RegExp }[] = [
  {
    name: 'base importing a feature (the old logger-in-firmware arrow)',
    files: {
      'base/logger.ts': "import { x } from '../firmware/x.js';\nexport const y = x;\n",
      'firmware/x.ts': 'export const x = 1;\n',
    },
    rule: /base-is-the-bottom/,
  },
  {
    name: 'hw importing a feature (the old Clock-from-pairing arrow)',
    files: {
      'hw/gpio/button.ts':
        "import { w } from '../../firmware/pairing/window.js';\nexport const b = w;\n",
      'firmware/pairing/window.ts': 'export const w = 1;\n',
    },
    rule: /hw-sits-on-base/,
  },
  {
    name: 'one feature importing another (the old hub -> relay client arrow)',
    files: {
      'firmware/uplink.ts': "import { c } from '../relay/client.js';\nexport const u = c;\n",
      'relay/client.ts': 'export const c = 1;\n',
    },
    rule: /features-do-not-import-each-other/,
  },
  {
    name: 'a feature reaching up to the composition (the old CLI-types arrow)',
    files: {
      'ota/cli.ts': "import { m } from '../bin/cli.js';\nexport const o = m;\n",
      'bin/cli.ts': 'export const m = 1;\n',
    },
    rule: /features-do-not-import-composition/,
  },
  {
    name: 'a benchmark importing a test file',
    files: {
      'bench/b.ts': "import { h } from '../test/helpers.js';\nexport const b = h;\n",
      'test/helpers.ts': 'export const h = 1;\n',
    },
    rule: /bin-and-bench-stay-apart/,
  },
  {
    name: 'an import cycle inside one folder',
    files: {
      'app/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
      'app/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
    },
    rule: /no-cycle/,
  },
];

for (const c of CASES) {
  t.test(`fails: ${c.name}`, async (tt) => {
    const dir = await tree(tt, c.files);
    const dirs = [...new Set(Object.keys(c.files).map((p) => p.split('/')[0] ?? ''))];
    const r = await cruise(dir, dirs);
    tt.not(r.code, 0, 'the check must fail');
    tt.match(r.out, c.rule);
  });
}

t.test('passes: a downward arrow and an import inside one feature', async (tt) => {
  const dir = await tree(tt, {
    'base/errors.ts': 'export const e = 1;\n',
    'protocol/items.ts': "import { e } from '../base/errors.js';\nexport const i = e;\n",
    'firmware/a.ts': "import { i } from '../protocol/items.js';\nexport const a = i;\n",
    'firmware/b.ts': "import { a } from './a.js';\nexport const b = a;\n",
    'dev/run.ts': "import { b } from '../firmware/b.js';\nexport const r = b;\n",
  });
  const r = await cruise(dir, ['base', 'protocol', 'firmware', 'dev']);
  tt.equal(r.code, 0, r.out);
});

/** A stand-in onnxruntime-node package in the throwaway tree, so its imports resolve. */
const ONNX_STUB = {
  'node_modules/onnxruntime-node/package.json':
    '{ "name": "onnxruntime-node", "version": "0.0.0", "main": "index.js", "types": "index.d.ts" }\n',
  'node_modules/onnxruntime-node/index.js': 'export class InferenceSession {}\n',
  'node_modules/onnxruntime-node/index.d.ts': 'export declare class InferenceSession {}\n',
};

t.test(
  'onnxruntime-node: only loaded on demand (await import), types may be imported',
  async (tt) => {
    const eager = await tree(tt, {
      ...ONNX_STUB,
      'firmware/media/detector.ts':
        "import { InferenceSession } from 'onnxruntime-node';\nexport const d = InferenceSession;\n",
    });
    const bad = await cruise(eager, ['firmware']);
    tt.not(bad.code, 0, 'a static import fails the check');
    tt.match(bad.out, /onnxruntime-loads-on-demand/);

    const lazy = await tree(tt, {
      ...ONNX_STUB,
      'firmware/media/detector.ts':
        "import type { InferenceSession } from 'onnxruntime-node';\n" +
        'export async function load(): Promise<typeof InferenceSession> {\n' +
        "  return (await import('onnxruntime-node')).InferenceSession;\n}\n",
    });
    const good = await cruise(lazy, ['firmware']);
    tt.equal(good.code, 0, good.out);
  },
);
