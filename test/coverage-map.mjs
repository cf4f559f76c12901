// Each test gets coverage credit only for the module it mirrors:
// test/hw/os/run.test.ts -> hw/os/run.ts. Integration tests claim nothing.
export default function coverageMap(testFile) {
  const f = testFile.replace(/\\/g, '/');
  if (f.startsWith('test/integration/') || f.startsWith('test/architecture/')) return null;
  const m = /^test\/(.+)\.test\.ts$/.exec(f);
  return m ? [`${m[1]}.ts`] : null;
}
