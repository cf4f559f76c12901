// The systemd unit passes `systemd-analyze verify` without a single warning.
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { run } from '../../../hw/os/run.js';
import { HUB_GLIBC_TUNABLES, HUB_NODE_FLAGS } from '../../../firmware/supervisor/malloc.js';

const UNIT = join(
  import.meta.dirname,
  '..',
  '..',
  '..',
  'firmware',
  'supervisor',
  'vigil-hub.service',
);

t.test('vigil-hub.service verifies cleanly', async (t) => {
  const text = await readFile(UNIT, 'utf8');
  for (const line of [
    'Type=notify',
    'WatchdogSec=30s',
    'Restart=on-failure',
    'NoNewPrivileges=yes',
    'ProtectSystem=full',
  ]) {
    t.ok(text.split('\n').includes(line), line);
  }
  // verify wants ExecStart's binary to exist: point it at this machine's node.
  const dir = await mkdtemp(join(tmpdir(), 'vigil-unit-'));
  const copy = join(dir, 'vigil-hub.service');
  await writeFile(copy, text.replace('/usr/local/bin/node', process.execPath));
  const r = await run('systemd-analyze', ['verify', copy], { okExitCodes: [0, 1] });
  const complaints = r.stderr
    .split('\n')
    .filter((l) => l.includes('vigil-hub.service') && !l.includes('sysinit.target'));
  t.equal(r.exitCode, 0, 'verify succeeds');
  t.same(complaints, [], 'no warnings about the unit');
});

t.test('the check catches a broken unit (it can fail)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-unit-'));
  const copy = join(dir, 'vigil-hub.service');
  const text = await readFile(UNIT, 'utf8');
  await writeFile(
    copy,
    text.replace('/usr/local/bin/node', process.execPath).replace('WatchdogSec=', 'WatchdgSec='),
  );
  const r = await run('systemd-analyze', ['verify', copy], { okExitCodes: [0, 1] });
  t.match(r.stderr, /Unknown key 'WatchdgSec'/);
});

t.test(
  'the unit and the local run (npm run vigil) set the hub malloc tunables and node flags',
  async (t) => {
    const text = await readFile(UNIT, 'utf8');
    const lines = text.split('\n');
    t.ok(lines.includes(`Environment=GLIBC_TUNABLES=${HUB_GLIBC_TUNABLES}`), 'vigil-hub.service');
    const exec = lines.find((l) => l.startsWith('ExecStart='));
    t.equal(
      exec,
      `ExecStart=/usr/local/bin/node ${HUB_NODE_FLAGS.join(' ')} /opt/vigil/dist/ota/launch.js -- hub --config /etc/vigil/config.json`,
      'vigil-hub.service: node flags before the script',
    );
    const pkg = JSON.parse(
      await readFile(join(import.meta.dirname, '..', '..', '..', 'package.json'), 'utf8'),
    ) as { scripts: Record<string, string> };
    t.equal(
      pkg.scripts.vigil,
      `GLIBC_TUNABLES=${HUB_GLIBC_TUNABLES} tsx ${HUB_NODE_FLAGS.join(' ')} bin/vigil.ts`,
      'package.json',
    );
  },
);
