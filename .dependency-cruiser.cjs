// The dependency rule (README, "Architecture"), checked by `npm run deps`
// (part of `npm run check` and of CI):
//
//   base  <-  {protocol, hw}  <-  {firmware, ota, app, relay, provisioning, image}  <-  {dev, bench, bin}
//
// An arrow may only point down (or stay inside its own folder). Folders on the
// same layer share code only through the layers below. test/ may import
// anything; nothing imports test/. No import cycles anywhere.
//
// Declared exceptions: none. An exception goes here, as a `pathNot` on the one
// rule it bends, with the reason in a comment beside it.
const FEATURES = '(firmware|ota|app|relay|provisioning|image)';
const TOP = '(dev|bench|bin)';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      severity: 'error',
      comment: 'Import cycles hide the real layering; break the cycle with a port below both.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'base-is-the-bottom',
      severity: 'error',
      comment:
        'base/ holds errors, logger, clock, async helpers and command types; it imports nothing of Vigil.',
      from: { path: '^base/' },
      to: { path: `^(protocol|hw|${FEATURES.slice(1, -1)}|${TOP.slice(1, -1)}|test)/` },
    },
    {
      name: 'protocol-sits-on-base',
      severity: 'error',
      comment: 'protocol/ (pure shared formats and the relay client) may import base/ only.',
      from: { path: '^protocol/' },
      to: { path: `^(hw|${FEATURES.slice(1, -1)}|${TOP.slice(1, -1)}|test)/` },
    },
    {
      name: 'hw-sits-on-base',
      severity: 'error',
      comment: 'hw/ (OS and hardware adapters) may import base/ only.',
      from: { path: '^hw/' },
      to: { path: `^(protocol|${FEATURES.slice(1, -1)}|${TOP.slice(1, -1)}|test)/` },
    },
    {
      name: 'features-do-not-import-each-other',
      severity: 'error',
      comment: 'A feature shares code with another only through base/, protocol/ or hw/.',
      from: { path: `^${FEATURES}/` },
      to: { path: `^${FEATURES}/`, pathNot: '^$1/' },
    },
    {
      name: 'features-do-not-import-composition',
      severity: 'error',
      comment: 'dev/, bench/ and bin/ compose the features; the features never reach up to them.',
      from: { path: `^${FEATURES}/` },
      to: { path: `^(${TOP.slice(1, -1)}|test)/` },
    },
    {
      name: 'dev-is-not-an-entry-point',
      severity: 'error',
      comment: 'bin/ loads dev/; bench/ may use dev/ fixtures; dev/ uses neither.',
      from: { path: '^dev/' },
      to: { path: '^(bin|bench|test)/' },
    },
    {
      name: 'bin-and-bench-stay-apart',
      severity: 'error',
      comment: 'bin/ is the shipped entry point; bench/ is not shipped. Neither imports test/.',
      from: { path: '^(bin|bench)/' },
      to: { path: '^(bench|test)/', pathNot: '^$1/' },
    },
    {
      name: 'bench-does-not-import-bin',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: '^bin/' },
    },
    {
      name: 'onnxruntime-loads-on-demand',
      severity: 'error',
      comment:
        'onnxruntime-node maps ~15 MiB of native code when loaded: only `await import()` where a model runs, so the hub at rest stays without it (issue #19, RSS <= 64 MiB). Type-only imports are fine.',
      from: {},
      to: { path: 'onnxruntime', dynamic: false, dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'shipped-code-uses-runtime-dependencies',
      severity: 'error',
      comment:
        'What ships (everything but test/, bench/ and dev/fixtures/) imports only `dependencies`.',
      from: { pathNot: '^(test|bench|dev/fixtures)/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: {
      // node_modules is not excluded (only not followed): rules on packages need the edges to it
      path: '^(dist|coverage|\\.tap|test/system/\\.cache|image/\\.cache|image/out)',
    },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
