import t from 'tap';
import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClockError, DateCommandClock, FakeSystemClock } from '../../../hw/clock/system-clock.js';

/** A stand-in program that records its argv (the real `date -s` would change this machine's clock). */
async function recorder(dir: string, name: string, exitCode = 0): Promise<string> {
  const p = join(dir, name);
  await writeFile(
    p,
    `#!/bin/sh\nprintf '%s\\n' "$*" >> ${JSON.stringify(join(dir, 'calls'))}\nexit ${exitCode}\n`,
  );
  await chmod(p, 0o755);
  return p;
}

void t.test('sets the clock with date -u -s @sec, then saves it with fake-hwclock', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-clock-'));
  const date = await recorder(dir, 'date');
  const fhc = await recorder(dir, 'fake-hwclock');
  const { run } = await import('../../../hw/os/run.js');
  const clock = new DateCommandClock({
    dateCommand: date,
    // route fake-hwclock to the recorder (found, as on the image)
    run: (cmd, argv, o) => run(cmd === 'fake-hwclock' ? fhc : cmd, argv, o),
    which: (cmd) => Promise.resolve(cmd === 'fake-hwclock' ? fhc : null),
  });
  await clock.set(Date.UTC(2026, 10, 23, 12, 0, 0, 999));
  t.same((await readFile(join(dir, 'calls'), 'utf8')).trim().split('\n'), [
    `-u -s @${Date.UTC(2026, 10, 23, 12) / 1000}`,
    'save force',
  ]);
  t.ok(Math.abs(clock.now() - Date.now()) < 1000, 'now() is the system clock');
});

void t.test('without fake-hwclock only the clock is set; failures are ClockErrors', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-clock-'));
  const date = await recorder(dir, 'date');
  await new DateCommandClock({ dateCommand: date, which: () => Promise.resolve(null) }).set(
    1_800_000_000_000,
  );
  t.equal((await readFile(join(dir, 'calls'), 'utf8')).trim(), '-u -s @1800000000');
  const bad = await recorder(dir, 'date-eperm', 1);
  await t.rejects(
    new DateCommandClock({ dateCommand: bad, which: () => Promise.resolve(null) }).set(1e12),
    { code: 'ECLOCK', message: /date -u -s @1000000000/ },
  );
  const fhcBad = await recorder(dir, 'fhc-bad', 2);
  const { run } = await import('../../../hw/os/run.js');
  await t.rejects(
    new DateCommandClock({
      dateCommand: date,
      run: (cmd, argv, o) => run(cmd === 'fake-hwclock' ? fhcBad : cmd, argv, o),
      which: () => Promise.resolve(fhcBad),
    }).set(1e12),
    { code: 'ECLOCK', message: /fake-hwclock save failed/ },
  );
  await t.rejects(new DateCommandClock({ dateCommand: date }).set(-1), ClockError);
  await t.rejects(new DateCommandClock({ dateCommand: date }).set(Number.NaN), ClockError);
});

void t.test('FakeSystemClock', async (t) => {
  const c = new FakeSystemClock(1000);
  t.ok(c.now() >= 1000 && c.now() < 60_000);
  await c.set(5_000_000);
  t.ok(c.now() >= 5_000_000 && c.now() < 5_060_000);
  t.same(c.sets, [5_000_000]);
  t.ok(Math.abs(new FakeSystemClock().now() - Date.now()) < 1000);
});
