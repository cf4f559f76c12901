import t from 'tap';
import { CommandError, run, spawnProcess, which } from '../../../hw/os/run.js';

t.test('runs argv without a shell and captures output', async (t) => {
  const r = await run('printf', ['%s|', 'a b', '$HOME', ';rm -rf /']);
  t.equal(r.stdout.toString(), 'a b|$HOME|;rm -rf /|', 'arguments reach the program verbatim');
  t.equal(r.exitCode, 0);
});

t.test('passes secrets through stdin only', async (t) => {
  const r = await run('cat', [], { stdin: 'hunter2-secret' });
  t.equal(r.stdout.toString(), 'hunter2-secret');
});

t.test('non-zero exit rejects with a typed CommandError carrying the stderr tail', async (t) => {
  const err = await run('sh', ['-c', 'echo first >&2; echo "the reason" >&2; exit 3']).catch(
    (e: unknown) => e,
  );
  t.ok(err instanceof CommandError);
  const ce = err as CommandError;
  t.equal(ce.exitCode, 3);
  t.equal(ce.failure, 'exit');
  t.match(ce.stderr, /the reason/);
  t.match(ce.message, /exited with code 3: first \| the reason/);
  t.equal(ce.code, 'ECOMMAND');
});

t.test('okExitCodes widens success', async (t) => {
  const r = await run('sh', ['-c', 'exit 2'], { okExitCodes: [0, 2] });
  t.equal(r.exitCode, 2);
});

t.test('timeout kills the process', async (t) => {
  const err = (await run('sleep', ['10'], { timeoutMs: 100 }).catch(
    (e: unknown) => e,
  )) as CommandError;
  t.equal(err.failure, 'timeout');
  t.equal(err.signal, 'SIGTERM');
});

t.test('AbortSignal cancels, also before start', async (t) => {
  const ac = new AbortController();
  const p = run('sleep', ['10'], { signal: ac.signal });
  setTimeout(() => {
    ac.abort();
  }, 50);
  const err = (await p.catch((e: unknown) => e)) as CommandError;
  t.equal(err.failure, 'aborted');
  const err2 = (await run('true', [], { signal: AbortSignal.abort() }).catch(
    (e: unknown) => e,
  )) as CommandError;
  t.equal(err2.failure, 'aborted');
});

t.test('a missing program is a spawn failure', async (t) => {
  const err = (await run('/nonexistent/program', []).catch((e: unknown) => e)) as CommandError;
  t.ok(err instanceof CommandError);
  t.equal(err.failure, 'spawn');
});

t.test('stdout overflow is bounded', async (t) => {
  const err = (await run('yes', [], { maxStdoutBytes: 1024 }).catch(
    (e: unknown) => e,
  )) as CommandError;
  t.equal(err.failure, 'overflow');
});

t.test('spawnProcess runs and stops a long-lived child', async (t) => {
  const p = spawnProcess('sleep', ['30'], { stdout: 'ignore', stderr: 'ignore', detached: true });
  t.ok(p.pid);
  const r = await p.stop(1000);
  t.equal(r.signal, 'SIGTERM');
  const bad = spawnProcess('/nonexistent/x', []);
  t.equal((await bad.exited).exitCode, -1);
});

t.test('which finds programs on PATH', async (t) => {
  t.match(await which('sh'), /\/sh$/);
  t.equal(await which('definitely-not-a-program-xyz'), null);
});
