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
 * (createRequire: unix-dgram, ts-mls's files in protocol/mls-profile.ts); the detector
 * looks beside itself, then in `../hw/detector/models/` (hw/detector/onnx-detector.ts).
 *
 * Packages are bundled in (zod, @hpke, @noble: one module each instead of ~150 files),
 * except those with native code or files beside their modules. zod's 64 translations of
 * its error messages are left out: Vigil uses the default (English) messages only, which
 * zod imports on its own (`locales/en.js`); `z.locales` is empty in the bundle.
 *
 *   npx tsx image/app-bundle.ts [OUTDIR=dist]     (part of `npm run build`)
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BuildOptions, Plugin } from 'esbuild';

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
  // loaded module by module from its own files by URL (protocol/mls-profile.ts)
  'ts-mls',
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
 * esbuild options shared by the shipped bundle and the benchmarks that build a hub the
 * way it ships (bench/media-recording.ts, bench/hub-floor.ts).
 */
export const HUB_BUNDLE_OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: [...APP_BUNDLE_EXTERNALS],
  plugins: [zodWithoutLocales],
  logLevel: 'warning',
  legalComments: 'none',
} as const satisfies BuildOptions;

/** Bundle the shipped entry points of the sources in `srcDir` into `outDir` (dist/). */
export async function bundleApp(o: { readonly srcDir: string; readonly outDir: string }): Promise<{
  readonly files: readonly string[];
}> {
  const { build } = await import('esbuild');
  const r = await build({
    ...HUB_BUNDLE_OPTIONS,
    absWorkingDir: o.srcDir,
    entryPoints: APP_BUNDLE_ENTRIES.map((e) => ({ in: e.in, out: e.out })),
    outdir: o.outDir,
    splitting: true,
    chunkNames: 'bin/[name]-[hash]',
    metafile: true,
  });
  return { files: Object.keys(r.metafile.outputs).sort() };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const outDir = resolve(process.argv[2] ?? 'dist');
  const { files } = await bundleApp({ srcDir: process.cwd(), outDir });
  process.stdout.write(
    `bundled ${APP_BUNDLE_ENTRIES.map((e) => join(outDir, `${e.out}.js`)).join(', ')} (${String(files.length)} files)\n`,
  );
}
