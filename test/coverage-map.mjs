import { existsSync } from 'node:fs';

// Each test gets coverage credit only for the module it mirrors:
// test/hw/os/run.test.ts -> hw/os/run.ts. A test of one aspect of a module, named
// <module>-<aspect>.test.ts (test/firmware/storage/retention-log.test.ts), mirrors
// <module>.ts when no <module>-<aspect>.ts exists. Integration tests claim nothing.
export default function coverageMap(testFile) {
  const f = testFile.replace(/\\/g, '/');
  if (f.startsWith('test/integration/') || f.startsWith('test/architecture/')) return null;
  const m = /^test\/(.+)\.test\.ts$/.exec(f);
  if (!m) return null;
  let mod = m[1];
  while (!existsSync(`${mod}.ts`) && /-[^/-]+$/.test(mod)) mod = mod.replace(/-[^/-]+$/, '');
  return existsSync(`${mod}.ts`) ? [`${mod}.ts`] : [`${m[1]}.ts`];
}
