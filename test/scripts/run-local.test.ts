// scripts/run-local.sh as a new user runs it (issue #23 item 1): numbered steps, npm ci and the
// build summarised (their output kept in a log file, its tail shown when a step fails), no
// progress carriage returns when the output is not a terminal, and `vigil dev` started last
// with the user's options. npm, node, ffmpeg and g++ are stand-ins on PATH (no install, no
// build here).
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CommandError, run } from '../../hw/os/run.js';

const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'run-local.sh');

async function tree(buildFails: boolean): Promise<{ root: string; env: Record<string, string> }> {
  const root = await mkdtemp(join(tmpdir(), 'vigil-run-local-'));
  await mkdir(join(root, 'scripts'));
  await mkdir(join(root, 'bin'));
  await copyFile(SCRIPT, join(root, 'scripts', 'run-local.sh'));
  await writeFile(join(root, 'package-lock.json'), '{}\n');
  const stub = async (name: string, body: string) => {
    await writeFile(join(root, 'bin', name), `#!/bin/sh\n${body}\n`);
    await chmod(join(root, 'bin', name), 0o755);
  };
  await stub(
    'npm',
    [
      'case "$1" in',
      '  ci) echo "npm warn something noisy"; echo "added 3 packages in 1s";;',
      buildFails
        ? '  run) echo "app/x.ts(1,1): error TS2304: Cannot find name y." ; exit 2;;'
        : '  run) echo "tsc output nobody needs";;',
      'esac',
    ].join('\n'),
  );
  // present, so step 1 installs nothing
  await stub('ffmpeg', 'exit 0');
  await stub('g++', 'exit 0');
  await stub(
    'node',
    ['if [ "$1" = "-p" ]; then echo 20; exit 0; fi', 'echo "vigil started: $*"'].join('\n'),
  );
  return { root, env: { PATH: `${join(root, 'bin')}:${process.env.PATH ?? ''}`, TMPDIR: root } };
}

t.test('steps, summaries, and vigil dev started last with the options', async (t) => {
  const { root, env } = await tree(false);
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const r = await run('bash', [join(root, 'scripts', 'run-local.sh'), '--viewer-port', '9000'], {
    env,
    timeoutMs: 120_000,
  });
  const out = r.stdout.toString();
  const lines = out.trimEnd().split('\n');
  t.match(lines[0], /^\[run-local\] 1\/4 checking system packages/);
  t.ok(out.includes('[run-local] 2/4 npm dependencies'));
  t.ok(out.includes('[run-local]   npm ci (a first install takes a minute or two)'));
  t.match(out, /\[run-local\] {3}npm ci: done in \d+ s\n/);
  t.ok(out.includes('[run-local]   added 3 packages in 1s'), "npm's own summary line");
  t.match(
    out,
    /\[run-local\] 3\/4 building \(TypeScript -> dist\/\)\n\[run-local\] {3}build: done in \d+ s\n/,
  );
  t.ok(out.includes('[run-local] 4/4 starting vigil dev'));
  t.equal(
    lines.at(-1),
    'vigil started: dist/bin/vigil.js dev --viewer-port 9000',
    'vigil dev last',
  );
  t.notOk(out.includes('noisy') || out.includes('tsc output'), 'tool output stays in the log');
  t.notOk(out.includes('\r'), 'no progress carriage returns off a terminal');
});

t.test('a failing step: the tail of its output, exit 1', async (t) => {
  const { root, env } = await tree(true);
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const e = await run('bash', [join(root, 'scripts', 'run-local.sh')], {
    env,
    timeoutMs: 120_000,
  }).then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof CommandError)) throw new Error('run-local.sh should have failed');
  t.equal(e.exitCode, 1);
  t.match(e.stderr, /^ {4}app\/x\.ts\(1,1\): error TS2304: Cannot find name y\.$/m, 'the tail');
  t.ok(e.stderr.length < 4000, 'a short tail, not the whole log');
});
