/**
 * The shipped program as bundles (issue #19, memory): esbuild over the two entry points
 * a device runs — `bin/vigil.ts` (the CLI and the hub; APP_ENTRY, `dist/bin/vigil.js`)
 * and `ota/launch.ts` (the unit's ExecStart, `dist/ota/launch.js`) — with code splitting,
 * so each command still loads only its own code (the lazy commands become chunks) and
 * the launcher and the hub it runs in its process share one copy of what both use.
 *
 * The bundles are written over tsc's output of those two files (`tsc -p
 * tsconfig.build.json` runs first and stays the source of every other file of dist/:
 * rauc-backend.js, the detector's model directory...). Chunks sit in `dist/bin/` beside
 * the CLI, so code that finds files relative to its own module (`import.meta.url`) keeps
 * the depth it has in tsc's tree: `../../package.json` from bin/ (hub-ota.ts's
 * treeVersion, vigil.ts's version), node_modules for the packages left outside
 * (createRequire: unix-dgram); the detector
 * looks beside itself, then in `../hw/detector/models/` (hw/detector/onnx-detector.ts).
 *
 * Packages are bundled in (zod, ts-mls, @hpke, @noble: a few chunks instead of ~250 files),
 * except those with native code or files beside their modules; ts-mls's files, which the
 * MLS profile loads by URL from node_modules in the source tree, are imported by literal
 * specifiers in the bundle (protocol/ts-mls-files.ts, tsMlsFilesBundled). zod's 64 translations of
 * its error messages are left out: Vigil uses the default (English) messages only, which
 * zod imports on its own (`locales/en.js`); `z.locales` is empty in the bundle.
 *
 *   npx tsx image/app-bundle.ts [OUTDIR=dist]     (part of `npm run build`)
 */
import { readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TS_MLS_FILES } from '../protocol/ts-mls-files.js';

/**
 * The part of esbuild's API used here. esbuild is a development dependency (the shipped
 * code's dependency rule, .dependency-cruiser.cjs): it is loaded from the source tree being
 * built and not imported here, not even for its types.
 */
interface Plugin {
  readonly name: string;
  setup(b: {
    onResolve(
      o: { filter: RegExp },
      cb: (a: {
        path: string;
        importer: string;
      }) => { path: string; namespace: string } | undefined,
    ): void;
    onLoad(
      o: { filter: RegExp; namespace?: string },
      cb: () => { contents: string; loader: 'js' },
    ): void;
  }): void;
}
interface Esbuild {
  build(o: Record<string, unknown>): Promise<{ metafile?: { outputs: Record<string, unknown> } }>;
}

/** The entry points bundled, as [source, output path under the out dir without .js]. */
export const APP_BUNDLE_ENTRIES: readonly { readonly in: string; readonly out: string }[] = [
  { in: 'bin/vigil.ts', out: 'bin/vigil' },
  { in: 'ota/launch.ts', out: 'ota/launch' },
];

/** Packages loaded from node_modules at run time: native addons, or files beside their code. */
export const APP_BUNDLE_EXTERNALS: readonly string[] = [
  'onnxruntime-node',
  'onoff',
  'unix-dgram',
  'v4l2-camera-ts',
  'libv4l2-ts',
  'libv4l2-ts/*',
  '*.node',
  'pdfkit',
  'pg',
  '@aws-sdk/*',
  'qrcode',
  'web-push',
  'playwright-core',
];

/** zod's `locales/index.js` (every translation) replaced by an empty module. */
export const zodWithoutLocales: Plugin = {
  name: 'zod-without-locales',
  setup(b) {
    b.onResolve({ filter: /(^|\/)locales\/index\.js$/ }, (a) =>
      /[\\/]node_modules[\\/]zod[\\/]/.test(a.importer)
        ? { path: 'zod-locales', namespace: 'vigil-empty' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'vigil-empty' }, () => ({
      contents: 'export {};\n',
      loader: 'js',
    }));
  },
};

/**
 * protocol/ts-mls-files.ts replaced by literal imports of the same ts-mls files, which esbuild
 * resolves through the package's exports ("./*.js") and bundles: the profile's modules come
 * from the bundle instead of ~90 files in node_modules, still loaded only when the profile is.
 */
export const tsMlsFilesBundled: Plugin = {
  name: 'ts-mls-files-bundled',
  setup(b) {
    b.onLoad({ filter: /[\\/]protocol[\\/]ts-mls-files\.ts$/ }, () => ({
      contents: [
        `export const TS_MLS_FILES = ${JSON.stringify(TS_MLS_FILES)};`,
        'const files = {',
        ...TS_MLS_FILES.map(
          (f) => `  ${JSON.stringify(f)}: () => import(${JSON.stringify(`ts-mls/${f}`)}),`,
        ),
        '};',
        'export async function importMlsFile(file) {',
        '  const load = files[file];',
        '  if (load === undefined) throw new Error(`ts-mls: ${file} is not in the bundle`);',
        '  return load();',
        '}',
        '',
      ].join('\n'),
      loader: 'js',
    }));
  },
};

/**
 * esbuild options shared by the shipped bundle and the benchmarks that build a hub the
 * way it ships (bench/media-recording.ts, bench/hub-floor.ts).
 */
export const HUB_BUNDLE_OPTIONS: {
  readonly bundle: true;
  readonly platform: 'node';
  readonly format: 'esm';
  readonly target: string;
  readonly external: string[];
  readonly plugins: Plugin[];
  readonly logLevel: 'warning';
  readonly legalComments: 'none';
  readonly minifyWhitespace: true;
} = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: [...APP_BUNDLE_EXTERNALS],
  plugins: [zodWithoutLocales, tsMlsFilesBundled],
  logLevel: 'warning',
  legalComments: 'none',
  // The module sources live in the V8 heap for the process's life (lazy compilation and
  // Function.prototype.toString): without their whitespace the loaded hub holds 1.4 MiB
  // less heap (bench: the hub-floor child, 6 fresh processes each, 16:02, load ~1:
  // RSS 53.4 -> 52.0 MiB). Names stay (no identifier minification): stack traces keep
  // their function names; their columns point into long lines (decisions.md, #19).
  minifyWhitespace: true,
};

/**
 * The esbuild of the source tree being built (its node_modules, a development dependency),
 * as the app stage runs that tree's tsc: building an image is a development host's job, and
 * nothing on a device imports esbuild.
 */
async function esbuildOf(srcDir: string): Promise<Esbuild> {
  const main = createRequire(join(srcDir, 'package.json')).resolve('esbuild');
  return (await import(pathToFileURL(main).href)) as Esbuild;
}

/** A chunk's file name (`chunkNames`): tsc's files in bin/ never end in an 8-character hash. */
const CHUNK_FILE = /^[\w.-]+-[A-Z0-9]{8}\.js$/;

/** Bundle the shipped entry points of the sources in `srcDir` into `outDir` (dist/). */
export async function bundleApp(o: { readonly srcDir: string; readonly outDir: string }): Promise<{
  readonly files: readonly string[];
}> {
  const esbuild = await esbuildOf(o.srcDir);
  // an earlier build's chunks (other hashes) would otherwise stay and be packed into app bundles
  const binDir = join(o.outDir, 'bin');
  for (const f of await readdir(binDir).catch(() => [] as string[]))
    if (CHUNK_FILE.test(f)) await rm(join(binDir, f), { force: true });
  const r = await esbuild.build({
    ...HUB_BUNDLE_OPTIONS,
    absWorkingDir: o.srcDir,
    entryPoints: APP_BUNDLE_ENTRIES.map((e) => ({ in: e.in, out: e.out })),
    outdir: o.outDir,
    splitting: true,
    chunkNames: 'bin/[name]-[hash]',
    metafile: true,
  });
  return { files: Object.keys(r.metafile?.outputs ?? {}).sort() };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const outDir = resolve(process.argv[2] ?? 'dist');
  const { files } = await bundleApp({ srcDir: process.cwd(), outDir });
  process.stdout.write(
    `bundled ${APP_BUNDLE_ENTRIES.map((e) => join(outDir, `${e.out}.js`)).join(', ')} (${String(files.length)} files)\n`,
  );
}
