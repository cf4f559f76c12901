import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { apInterfaces, twinReport } from '../../image/twin-report.js';

const IW_AP = `phy#1
\tInterface wlan1
\t\tifindex 4
\t\ttype managed
phy#0
\tInterface wlan0
\t\tifindex 3
\t\tssid Vigil-ABCDEF
\t\ttype AP
`;

t.test('apInterfaces reads iw dev', async (t) => {
  t.same(apInterfaces(IW_AP), ['wlan0']);
  t.same(apInterfaces('phy#0\n\tInterface wlan0\n\t\ttype managed\n'), []);
});

async function root(dir: string, state: string | undefined, hostapd: boolean): Promise<void> {
  await mkdir(join(dir, 'run/vigil'), { recursive: true });
  await mkdir(join(dir, 'etc'), { recursive: true });
  await writeFile(join(dir, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  if (state !== undefined)
    await writeFile(join(dir, 'run/vigil/status.json'), JSON.stringify({ state, since: 1 }));
  await mkdir(join(dir, 'dev/mapper'), { recursive: true });
  if (state === 'pairing') await writeFile(join(dir, 'dev/mapper/vigil-data'), '');
  await mkdir(join(dir, 'proc/1'), { recursive: true });
  await writeFile(join(dir, 'proc/1/comm'), 'systemd\n');
  if (hostapd) {
    await mkdir(join(dir, 'proc/77'), { recursive: true });
    await writeFile(join(dir, 'proc/77/comm'), 'hostapd\n');
  }
}

const DOCTOR = {
  format: 'vigil-doctor/1',
  checks: [{ id: 'camera', status: 'pass', details: { cameras: [{ driver: 'vivid' }] } }],
  counts: { pass: 1, warn: 0, fail: 0 },
};

/** `iw dev` answers `out`; `vigil doctor --json` answers `doctor` (pretty-printed, as the CLI). */
const iw =
  (out: string, doctor: string = JSON.stringify(DOCTOR, null, 2)) =>
  async (cmd: string, args: readonly string[]) => {
    if (cmd === 'iw') return { stdout: Buffer.from(out), stderr: '', exitCode: 0 };
    if (cmd === '/usr/bin/vigil' && args.join(' ').startsWith('doctor --json'))
      return { stdout: Buffer.from(doctor), stderr: '', exitCode: 1 };
    throw new Error(`unexpected command ${cmd} ${args.join(' ')}`);
  };

t.test('reports ok once the hub pairs and hostapd runs an AP', async (t) => {
  const dir = t.testdir();
  await root(dir, 'pairing', true);
  const lines: string[] = [];
  const rc = await twinReport({
    print: (l) => lines.push(l),
    env: { VIGIL_ROOT: dir },
    runner: iw(IW_AP),
    timeoutMs: 2000,
    pollMs: 10,
  });
  t.equal(rc, 0);
  t.same(lines, [
    'VIGIL-TWIN state=pairing',
    'VIGIL-TWIN hostapd=running ap=wlan0',
    'VIGIL-TWIN machine-id=generated',
    'VIGIL-TWIN data-grown=no',
    'VIGIL-TWIN data-volume=open bundle-plaintext=gone',
    `VIGIL-DOCTOR ${JSON.stringify(DOCTOR)}`,
    'VIGIL-TWIN result=ok',
  ]);
});

t.test('a doctor that gives no JSON report is said on its line, before the verdict', async (t) => {
  const dir = t.testdir();
  await root(dir, 'pairing', true);
  const lines: string[] = [];
  const rc = await twinReport({
    print: (l) => lines.push(l),
    env: { VIGIL_ROOT: dir },
    runner: iw(IW_AP, 'vigil: unknown command doctor'),
    timeoutMs: 2000,
    pollMs: 10,
  });
  t.equal(rc, 0);
  const doctor = lines.find((l) => l.startsWith('VIGIL-DOCTOR '));
  t.match(doctor, /^VIGIL-DOCTOR error=.*JSON/);
  t.equal(lines.indexOf(doctor ?? ''), lines.length - 2);
});

t.test(
  'a hub stuck in another state is reported after the settle time, not the whole deadline',
  async (t) => {
    const dir = t.testdir();
    await root(dir, 'locked', false);
    const lines: string[] = [];
    const rc = await twinReport({
      print: (l) => lines.push(l),
      env: { VIGIL_ROOT: dir },
      runner: iw(''),
      timeoutMs: 3_600_000, // an hour: waiting for it would time the test out
      settleMs: 50,
      pollMs: 10,
    });
    t.equal(rc, 1);
    t.ok(lines.includes('VIGIL-TWIN state=locked'));
  },
);

t.test('reports fail with what it saw when the deadline passes', async (t) => {
  const dir = t.testdir();
  await root(dir, 'locked', false);
  const lines: string[] = [];
  const rc = await twinReport({
    print: (l) => lines.push(l),
    env: { VIGIL_ROOT: dir },
    runner: iw(''),
    timeoutMs: 50,
    pollMs: 10,
  });
  t.equal(rc, 1);
  t.ok(lines.includes('VIGIL-TWIN state=locked'));
  t.ok(lines.includes('VIGIL-TWIN hostapd=absent ap=none'));
  t.ok(lines.includes('VIGIL-TWIN data-volume=closed bundle-plaintext=gone'));
  t.equal(lines.at(-1), 'VIGIL-TWIN result=fail');
});
