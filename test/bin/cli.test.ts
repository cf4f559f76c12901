/**
 * The command-line convention (base/command.ts), checked over EVERY command in
 * the registry (bin/cli.ts COMMANDS) and each of its subcommands: a command
 * added to the registry is covered without touching this file.
 */
import { describeCost, privacyCost, privacySchema } from '../../firmware/uplink/privacy.js';
import t from 'tap';
import type { Test } from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS, main } from '../../bin/cli.js';
import { EXIT_NOT_RUNNING } from '../../bin/hub.js';

async function vigil(argv: readonly string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, 'test', {
    env,
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
  });
  return { code, stdout, stderr };
}

const STACK = /\n\s+at .+[:(]/;

function oneLine(t: Test, text: string, what: string): void {
  t.equal(text.split('\n').filter((l) => l !== '').length, 1, `${what}: one line (${text})`);
  t.ok(text.endsWith('\n'), `${what}: the line ends`);
  t.notMatch(text, STACK, `${what}: no stack trace`);
}

void t.test('every command and subcommand follows the convention', async (t) => {
  const names = Object.keys(COMMANDS);
  t.ok(names.length >= 8, 'the registry is enumerated');
  for (const name of names) {
    const entry = COMMANDS[name]!;
    const { command } = await entry.load();
    t.equal(command.name, name, `${name}: registered under its own name`);
    const subs = Object.keys(command.subcommands ?? {});
    for (const path of [[], ...subs.map((s) => [s])]) {
      const where = ['vigil', name, ...path].join(' ');
      const help = await vigil([name, ...path, '--help']);
      t.equal(help.code, 0, `${where} --help exits 0`);
      t.match(
        help.stdout,
        /Exit codes: 0 success, 1 failure .*2 bad usage/,
        `${where}: exit codes`,
      );
      t.match(help.stdout, /Usage: vigil /, `${where}: usage`);
      t.equal(help.stderr, '', `${where} --help: nothing on stderr`);

      const unknown = await vigil([name, ...path, '--no-such-option']);
      t.equal(unknown.code, 2, `${where} --no-such-option exits 2`);
      oneLine(t, unknown.stderr, `${where} --no-such-option`);
      t.match(
        unknown.stderr,
        new RegExp(`^${where}: unknown option --no-such-option \\(see ${where} --help\\)\\n$`),
        `${where}: the words of the convention`,
      );
      t.equal(unknown.stdout, '', `${where} --no-such-option: nothing on stdout`);
    }
    t.ok(command.badValueExamples.length > 0, `${name}: declares a bad value to test`);
    for (const argv of command.badValueExamples) {
      const what = `vigil ${name} ${argv.join(' ')}`;
      const bad = await vigil([name, ...argv]);
      t.equal(bad.code, 2, `${what} exits 2`);
      oneLine(t, bad.stderr, what);
      t.match(bad.stderr, /\(see vigil .+ --help\)\n$/, `${what}: points to --help`);
      t.notMatch(bad.stderr, /NaN|TypeError|ERR_/, `${what}: no internal words`);
    }
  }
  const unknownCommand = await vigil(['no-such-command']);
  t.equal(unknownCommand.code, 2);
  oneLine(t, unknownCommand.stderr, 'unknown command');
  const top = await vigil(['--help']);
  t.equal(top.code, 0);
  t.match(top.stdout, /Exit codes: 0 success/);
});

void t.test('a subcommand has its own help (vigil app pair --help)', async (t) => {
  const pair = await vigil(['app', 'pair', '--help']);
  t.equal(pair.code, 0);
  t.match(pair.stdout, /Usage: vigil app pair --qr/);
  t.notMatch(pair.stdout, /Usage: vigil app <subcommand>/);
});

void t.test('ota serve --port abc: one line, exit 2 (not NaN, not 1)', async (t) => {
  const r = await vigil(['ota', 'serve', '--repo', '.', '--port', 'abc']);
  t.equal(r.code, 2);
  t.equal(
    r.stderr,
    'vigil ota serve: --port must be a port number (0..65535), got "abc" (see vigil ota serve --help)\n',
  );
});

void t.test('factory provision --out under /proc fails fast with one line', async (t) => {
  const r = await vigil(['factory', 'provision', '--count', '1', '--out', '/proc/x/y']);
  t.equal(r.code, 2);
  oneLine(t, r.stderr, 'provision into /proc');
  t.match(r.stderr, /cannot create \/proc\/x \(E[A-Z]+\)/);
});

void t.test('hub status: the local run, a stale status file, --json', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-hub-status-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  const none = await vigil(['hub', 'status', '--root', root]);
  t.equal(none.code, EXIT_NOT_RUNNING, 'no status file: not running');
  t.match(none.stdout, /^not running \(no status file: .*status\.json\)\n$/);

  // the local run keeps its hub's status under <dir>/hub/run/status.json
  const dev = join(dir, 'dev');
  await mkdir(join(dev, 'hub', 'run'), { recursive: true });
  const status = {
    state: 'running',
    summary: 'recording',
    since: '2026-01-01T00:00:00.000Z',
    pid: process.pid,
    children: [{ name: 'media', state: 'running', restarts: 2 }],
    services: {
      relay: {
        url: 'http://169.254.77.1:8080',
        source: 'bundle',
        lastContact: null,
        meeting: {
          state: 'waiting',
          failures: 3,
          lastError: 'relay http://169.254.77.1:8080 unreachable: fetch failed',
          nextAttemptAt: '2026-01-01T00:01:00.000Z',
        },
      },
      // what the hub writes with a privacy mode on (issue #20)
      privacy: {
        mode: 'constant-rate',
        notices: 'scheduled',
        estimate: describeCost(privacyCost(privacySchema.parse({ mode: 'constant-rate' }))),
      },
    },
  };
  await writeFile(join(dev, 'hub', 'run', 'status.json'), JSON.stringify(status));
  const up = await vigil(['hub', 'status', '--dir', dev]);
  t.equal(up.code, 0, up.stderr);
  t.match(up.stdout, /^hub:\s+running \(pid \d+, since 2026-01-01T00:00:00.000Z\)\n/);
  t.match(up.stdout, /child:\s+media running, 2 restart\(s\)/);
  t.match(
    up.stdout,
    'relay:    http://169.254.77.1:8080 (bundle); last contact never; meeting waiting, 3 failure(s), next try 2026-01-01T00:01:00.000Z: relay http://169.254.77.1:8080 unreachable: fetch failed\n',
    'the relay and its meeting',
  );
  t.match(
    up.stdout,
    /\nprivacy: {2}constant-rate: ~1\.06 GiB\/day per phone up and down .*1440 pushes\/day.*leaves ~1\.06 GiB on the relay\n/,
    'the privacy mode and its cost',
  );
  t.notMatch(up.stdout, /^\{/, 'human output by default');
  const j = await vigil(['hub', 'status', '--dir', dev, '--json']);
  t.equal(j.code, 0);
  t.match(JSON.parse(j.stdout), { running: true, state: 'running', pid: process.pid });

  // a process that is gone: the file is stale
  await writeFile(
    join(dev, 'hub', 'run', 'status.json'),
    JSON.stringify({ ...status, state: 'stopping', pid: 2 ** 22 + 1 }),
  );
  const stale = await vigil(['hub', 'status', '--dir', dev]);
  t.equal(stale.code, EXIT_NOT_RUNNING, 'a stale status file exits non-zero');
  t.match(stale.stdout, /^not running \(stale status file .*: process \d+ is gone\)\n$/);
  const staleJson = await vigil(['hub', 'status', '--dir', dev, '--json']);
  t.equal(staleJson.code, EXIT_NOT_RUNNING);
  t.match(JSON.parse(staleJson.stdout), { running: false });
});
