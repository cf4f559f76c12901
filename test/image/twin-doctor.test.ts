// The twin scenario's check of `vigil doctor --json` (image-twin-boot.host.ts, doctorProblems)
// on a VIGIL-DOCTOR console line the twin printed (fixture: a real boot's line, console prefix
// included), and on what a broken twin would print.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { doctorProblems } from '../system/scenarios/image-twin-boot.host.js';

const line = (
  await readFile(new URL('./fixtures/twin-doctor-console.txt', import.meta.url), 'utf8')
).trim();
const report = JSON.parse(line.slice(line.indexOf('{'))) as {
  checks: { id: string; status: string; details: Record<string, unknown> }[];
};
const withCheck = (id: string, patch: object): string => {
  const r = structuredClone(report);
  r.checks = r.checks.map((c) => (c.id === id ? { ...c, ...patch } : c));
  return `[  1.0] vigil[1]: VIGIL-DOCTOR ${JSON.stringify(r)}`;
};

t.test('a real twin report passes: vivid, software, LUKS open and mounted, AP mode', async (t) => {
  const d = doctorProblems(['boot noise', line, 'VIGIL-TWIN result=ok']);
  t.same(d.problems, []);
  t.match(d.summary, /camera=pass .*encoder=warn .*wifi-ap=pass luks=pass/);
});

t.test('each required finding missing is named', async (t) => {
  const cases: [string, object, RegExp][] = [
    [
      'camera',
      { status: 'fail', summary: 'no V4L2 camera', details: { cameras: [] } },
      /^camera: no vivid camera found \(fail: no V4L2 camera\)$/,
    ],
    ['encoder', { details: { path: 'v4l2-m2m' } }, /^encoder: the software path was not chosen/],
    [
      'luks',
      { status: 'warn', summary: 'LUKS volume open but not mounted', details: { state: 'open' } },
      /^luks: the data volume is not open and mounted \(warn: LUKS volume open but not mounted\)$/,
    ],
    [
      'wifi-ap',
      { status: 'fail', summary: 'no radio offers AP mode', details: { ap: false } },
      /^wifi-ap: no radio with AP mode/,
    ],
  ];
  for (const [id, patch, want] of cases) {
    const d = doctorProblems([withCheck(id, patch)]);
    t.equal(d.problems.length, 1, id);
    t.match(d.problems[0], want, id);
  }
});

t.test('no report, an error line, a mangled line, another format: each said', async (t) => {
  t.same(doctorProblems(['VIGIL-TWIN result=ok']).problems, [
    'no VIGIL-DOCTOR line on the console',
  ]);
  t.same(doctorProblems(['VIGIL-DOCTOR error=vigil exited with code 2']).problems, [
    'vigil doctor --json: error=vigil exited with code 2',
  ]);
  t.match(
    doctorProblems([line.slice(0, 500)]).problems[0],
    /^the VIGIL-DOCTOR line is not JSON \(\d+ chars, /,
  );
  t.same(doctorProblems(['VIGIL-DOCTOR {"format":"vigil-doctor/2","checks":[]}']).problems, [
    'not a vigil-doctor/1 report: format vigil-doctor/2',
  ]);
});
