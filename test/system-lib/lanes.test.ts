// The system suite's lanes (test/system/lib/lanes.ts; test/system/** itself is not in the tap
// run): jobs are deferreds the test releases one by one, so every ordering below is an event
// order, never a timing.
import t from 'tap';
import { runLanes, type LaneJob } from '../system/lib/lanes.js';

interface Deferred {
  readonly promise: Promise<void>;
  readonly resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Jobs that log their start and end and finish when the test says so. */
function harness() {
  const log: string[] = [];
  const gates = new Map<string, Deferred>();
  const started = new Map<string, Deferred>();
  let running = 0;
  let maxRunning = 0;
  const job = (name: string, weight: number): LaneJob => {
    gates.set(name, deferred());
    started.set(name, deferred());
    return {
      name,
      weight,
      run: async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        log.push(`start ${name}`);
        started.get(name)?.resolve();
        await gates.get(name)?.promise;
        log.push(`end ${name}`);
        running--;
      },
    };
  };
  return {
    log,
    job,
    /** Wait until `name` has started, then let it finish. */
    finish: async (name: string): Promise<void> => {
      await started.get(name)?.promise;
      gates.get(name)?.resolve();
    },
    started: (name: string) => started.get(name)?.promise,
    get maxRunning() {
      return maxRunning;
    },
  };
}

t.test(
  'beside work starts before the setup; the queue runs longest first on two lanes',
  async (t) => {
    const h = harness();
    const setup = deferred();
    const done = runLanes({
      setup: setup.promise,
      queue: [h.job('short', 180), h.job('long', 1500), h.job('mid', 900), h.job('tie', 900)],
      beside: [h.job('twin', 3600)],
      serial: false,
    });
    await h.started('twin');
    t.same(h.log, ['start twin'], 'the twin story starts while the guest is still being built');
    setup.resolve();
    await h.started('long');
    t.same(h.log, ['start twin', 'start long'], 'the first lane takes the longest job first');
    await h.finish('long');
    await h.started('mid');
    t.same(h.log.at(-1), 'start mid', 'then the next longest; ties keep their order');
    await h.finish('twin');
    await h.started('tie');
    t.same(h.log.slice(-2), ['end twin', 'start tie'], 'the second lane joins the queue');
    await h.finish('mid');
    await h.started('short');
    await h.finish('tie');
    await h.finish('short');
    await done;
    t.equal(h.maxRunning, 2, 'two jobs at most at once');
    t.same(
      h.log.filter((l) => l.startsWith('start')),
      ['start twin', 'start long', 'start mid', 'start tie', 'start short'],
    );
  },
);

t.test('serial: one job at a time, the queue first, the beside work last', async (t) => {
  const h = harness();
  const done = runLanes({
    setup: Promise.resolve(),
    queue: [h.job('a', 300), h.job('b', 600)],
    beside: [h.job('twin', 3600)],
    serial: true,
  });
  for (const n of ['b', 'a', 'twin']) await h.finish(n);
  await done;
  t.same(h.log, ['start b', 'end b', 'start a', 'end a', 'start twin', 'end twin']);
  t.equal(h.maxRunning, 1);
});

t.test('no beside work: both lanes take from the queue after the setup', async (t) => {
  const h = harness();
  const setup = deferred();
  const done = runLanes({
    setup: setup.promise,
    queue: [h.job('a', 300), h.job('b', 300), h.job('c', 300)],
    beside: [],
    serial: false,
  });
  await Promise.resolve();
  t.same(h.log, [], 'nothing runs before the setup');
  setup.resolve();
  await h.started('a');
  await h.started('b');
  t.same(h.log, ['start a', 'start b'], 'two guests at once');
  await h.finish('b');
  await h.started('c');
  await h.finish('a');
  await h.finish('c');
  await done;
  t.equal(h.maxRunning, 2);
});
