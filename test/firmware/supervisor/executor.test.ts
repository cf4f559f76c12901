import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import { Executor, backoffDelay, sleep } from '../../../firmware/supervisor/executor.js';
import type { EffectHandlers } from '../../../firmware/supervisor/executor.js';

function handlers(over: Partial<EffectHandlers> = {}): EffectHandlers {
  const none = () => Promise.resolve(undefined);
  return {
    'unlock-storage': () => Promise.resolve([{ type: 'storage-unlocked', dataDir: '/d' }]),
    'load-pairing-state': () => Promise.resolve([{ type: 'pairing-state-loaded', paired: true }]),
    'start-pairing': none,
    'stop-pairing': none,
    'factory-reset': () => Promise.resolve([{ type: 'factory-reset-done' }]),
    'start-services': none,
    'stop-services': none,
    'apply-update': () =>
      Promise.resolve([{ type: 'update-finished', outcome: 'committed', version: '1' }]),
    'report-status': none,
    shutdown: none,
    ...over,
  };
}

t.test('walks the machine through effect outcomes', async (t) => {
  const seen: string[] = [];
  const ex = new Executor({
    handlers: handlers(),
    logger: new MemoryLogger(),
    onState: (s) => seen.push(s.name),
  });
  ex.dispatch({ type: 'booted' });
  await ex.idle();
  t.same(seen, ['locked', 'unlocked', 'running']);
  t.same(
    ex.history.map((h) => h.event),
    ['booted', 'storage-unlocked', 'pairing-state-loaded'],
  );
  ex.dispatch({ type: 'stop-requested', exitCode: 0 });
  await ex.done;
  t.equal(ex.state.name, 'stopping');
});

t.test('failing effects are retried with backoff, then become a fatal error', async (t) => {
  let calls = 0;
  const log = new MemoryLogger();
  const ex = new Executor({
    handlers: handlers({
      'unlock-storage': () => {
        calls++;
        return Promise.reject(new Error('device busy'));
      },
    }),
    logger: log,
    retry: { 'unlock-storage': { attempts: 3, initialDelayMs: 5, maxDelayMs: 20 } },
  });
  ex.dispatch({ type: 'booted' });
  await ex.done;
  t.equal(calls, 3);
  t.same(ex.state, { name: 'failed', reason: 'unlock-storage failed: device busy' });
  t.equal(log.lines.filter((l) => l.includes('retrying')).length, 2);
});

t.test('a retry that succeeds continues normally', async (t) => {
  let calls = 0;
  const ex = new Executor({
    handlers: handlers({
      'unlock-storage': () =>
        ++calls < 2
          ? Promise.reject(new Error('not yet'))
          : Promise.resolve([{ type: 'storage-unlocked', dataDir: '/d' }]),
    }),
    logger: new MemoryLogger(),
    retry: { 'unlock-storage': { attempts: 3, initialDelayMs: 5, maxDelayMs: 20 } },
  });
  ex.dispatch({ type: 'booted' });
  await ex.idle();
  t.equal(ex.state.name, 'running');
});

t.test('stopping cancels effects in flight', async (t) => {
  let aborted = false;
  const ex = new Executor({
    handlers: handlers({
      'unlock-storage': async (_e, signal) => {
        await sleep(60_000, signal).catch(() => {
          aborted = true;
        });
        return [{ type: 'storage-unlocked', dataDir: '/never' }];
      },
    }),
    logger: new MemoryLogger(),
  });
  ex.dispatch({ type: 'booted' });
  ex.dispatch({ type: 'stop-requested' });
  await ex.done;
  await ex.idle();
  t.ok(aborted, 'the long unlock was aborted');
  t.equal(ex.state.name, 'stopping', 'its late outcome is ignored');
});

t.test('backoff grows exponentially within bounds', async (t) => {
  const p = { initialDelayMs: 100, maxDelayMs: 1000 };
  t.equal(
    backoffDelay(1, p, () => 0),
    50,
  );
  t.equal(
    backoffDelay(1, p, () => 1),
    100,
  );
  t.equal(
    backoffDelay(3, p, () => 1),
    400,
  );
  t.equal(
    backoffDelay(10, p, () => 1),
    1000,
  );
  await t.rejects(sleep(10, AbortSignal.abort(new Error('x'))));
});
