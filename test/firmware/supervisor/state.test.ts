import t from 'tap';
import {
  INITIAL_STATE,
  MAX_PAIRING_FAILURES,
  describe,
  transition,
} from '../../../firmware/supervisor/state.js';
import type { Event, State } from '../../../firmware/supervisor/state.js';

function walk(events: Event[], from: State = INITIAL_STATE): { state: State; effects: string[] } {
  let state = from;
  const effects: string[] = [];
  for (const e of events) {
    const r = transition(state, e);
    state = r.state;
    for (const eff of r.effects) if (eff.type !== 'report-status') effects.push(eff.type);
  }
  return { state, effects };
}

t.test('first boot: booting -> locked -> unlocked -> pairing -> running', async (t) => {
  const r = walk([
    { type: 'booted' },
    { type: 'storage-unlocked', dataDir: '/d' },
    { type: 'pairing-state-loaded', paired: false },
    { type: 'paired' },
  ]);
  t.same(r.state, { name: 'running', dataDir: '/d' });
  t.same(r.effects, [
    'unlock-storage',
    'load-pairing-state',
    'start-pairing',
    'stop-pairing',
    'start-services',
  ]);
});

t.test('paired device goes straight to running; update round trip', async (t) => {
  const r = walk([
    { type: 'booted' },
    { type: 'storage-unlocked', dataDir: '/d' },
    { type: 'pairing-state-loaded', paired: true },
    { type: 'update-staged', version: '1.2.0' },
  ]);
  t.same(r.state, { name: 'updating', dataDir: '/d', version: '1.2.0' });
  t.same(r.effects, ['unlock-storage', 'load-pairing-state', 'start-services', 'apply-update']);
  t.same(
    transition(r.state, { type: 'update-finished', outcome: 'rolled-back', version: '1.2.0' })
      .state,
    { name: 'running', dataDir: '/d' },
  );
});

t.test('locked stays locked with the reason and what it waits for', async (t) => {
  const r = walk([
    { type: 'booted' },
    { type: 'storage-locked', reason: 'wrong key', waitingFor: 'phone unlock' },
  ]);
  t.same(r.state, { name: 'locked', reason: 'wrong key', waitingFor: 'phone unlock' });
  t.equal(describe(r.state), 'locked: wrong key (waiting for phone unlock)');
  const retry = transition(r.state, { type: 'unlock-retry' });
  t.equal(retry.state, r.state, 'a retry keeps the state');
  t.same(retry.effects, [{ type: 'unlock-storage' }], 'and tries the key sources again');
  t.same(
    transition({ name: 'running', dataDir: '/d' }, { type: 'unlock-retry' }).effects,
    [],
    'only while locked',
  );
});

t.test('pairing failures are counted and the window closes at the limit', async (t) => {
  let s: State = { name: 'pairing', dataDir: '/d', failedAttempts: 0 };
  let closed = false;
  for (let i = 0; i < MAX_PAIRING_FAILURES; i++) {
    const r = transition(s, { type: 'pairing-failed', reason: 'bad psk' });
    s = r.state;
    if (r.effects.some((e) => e.type === 'stop-pairing')) closed = true;
  }
  t.same(s, { name: 'pairing', dataDir: '/d', failedAttempts: MAX_PAIRING_FAILURES });
  t.ok(closed, 'stop-pairing issued at the limit');
  const press = transition({ name: 'running', dataDir: '/d' }, { type: 'pairing-requested' });
  t.same(press.state, { name: 'pairing', dataDir: '/d', failedAttempts: 0 });
  t.same(
    press.effects.map((e) => e.type).filter((e) => e !== 'report-status'),
    ['stop-services', 'start-pairing'],
    'a press while running stops the services before the window opens',
  );
});

t.test('a crash loop degrades and recovery resumes', async (t) => {
  const running: State = { name: 'running', dataDir: '/d' };
  const d = transition(running, { type: 'child-crash-loop', child: 'encoder' }).state;
  t.same(d, {
    name: 'degraded',
    dataDir: '/d',
    reason: 'child "encoder" is in a crash loop',
    resume: 'running',
  });
  t.match(describe(d), /degraded: child "encoder"/);
  t.same(transition(d, { type: 'child-crash-loop', child: 'hostapd' }).state, {
    ...d,
    reason: 'child "hostapd" is in a crash loop',
  });
  t.same(transition(d, { type: 'child-recovered', child: 'encoder' }).state, running);
  const dp = transition(
    { name: 'pairing', dataDir: '/d', failedAttempts: 3 },
    { type: 'child-crash-loop', child: 'hostapd' },
  ).state;
  t.same(transition(dp, { type: 'child-recovered', child: 'hostapd' }).state, {
    name: 'pairing',
    dataDir: '/d',
    failedAttempts: 0,
  });
  const dl = transition({ name: 'booting' }, { type: 'child-crash-loop', child: 'x' }).state;
  const back = transition(dl, { type: 'child-recovered', child: 'x' });
  t.equal(back.state.name, 'locked');
  t.ok(back.effects.some((e) => e.type === 'unlock-storage'));
  t.same(
    transition(running, { type: 'child-recovered', child: 'x' }).state,
    running,
    'recovery outside degraded is ignored',
  );
  const dp2 = transition(dp, { type: 'paired' });
  t.same(
    dp2.effects.map((e) => e.type),
    ['stop-pairing', 'start-services', 'report-status'],
  );
  const du = transition(dl, { type: 'storage-unlocked', dataDir: '/x' });
  t.same(
    du.effects.map((e) => e.type),
    ['load-pairing-state', 'report-status'],
  );
});

t.test('stop and fatal errors from any state', async (t) => {
  const states: State[] = [
    { name: 'booting' },
    { name: 'locked', reason: 'r', waitingFor: undefined },
    { name: 'unlocked', dataDir: '/d' },
    { name: 'pairing', dataDir: '/d', failedAttempts: 0 },
    { name: 'running', dataDir: '/d' },
    { name: 'updating', dataDir: '/d', version: '2' },
    { name: 'degraded', dataDir: '/d', reason: 'x', resume: 'running' },
  ];
  for (const s of states) {
    const stop = transition(s, { type: 'stop-requested' });
    t.same(stop.state, { name: 'stopping', exitCode: 0 }, `${s.name} stops`);
    t.same(stop.effects[0], { type: 'shutdown', exitCode: 0 });
    t.type(describe(s), 'string');
    const fatal = transition(s, { type: 'fatal-error', reason: 'disk gone' });
    t.same(fatal.state, { name: 'failed', reason: 'disk gone' });
    t.same(fatal.effects[0], { type: 'shutdown', exitCode: 1 });
  }
  const stopping: State = { name: 'stopping', exitCode: 0 };
  t.same(transition(stopping, { type: 'stop-requested' }).effects, []);
  t.same(transition(stopping, { type: 'fatal-error', reason: 'x' }).state, stopping);
  t.same(transition(stopping, { type: 'child-crash-loop', child: 'x' }).state, stopping);
  t.same(transition({ name: 'failed', reason: 'x' }, { type: 'booted' }).state, {
    name: 'failed',
    reason: 'x',
  });
  t.equal(describe(stopping), 'stopping');
  t.equal(describe({ name: 'failed', reason: 'x' }), 'failed: x');
});

t.test('unexpected events leave the state unchanged and run nothing', async (t) => {
  const cases: [State, Event][] = [
    [{ name: 'booting' }, { type: 'paired' }],
    [
      { name: 'locked', reason: 'r', waitingFor: undefined },
      { type: 'update-staged', version: '1' },
    ],
    [{ name: 'unlocked', dataDir: '/d' }, { type: 'booted' }],
    [
      { name: 'pairing', dataDir: '/d', failedAttempts: 0 },
      { type: 'update-staged', version: '1' },
    ],
    [{ name: 'running', dataDir: '/d' }, { type: 'paired' }],
    [{ name: 'updating', dataDir: '/d', version: '1' }, { type: 'paired' }],
    [{ name: 'degraded', dataDir: '/d', reason: 'x', resume: 'running' }, { type: 'booted' }],
  ];
  for (const [s, e] of cases) {
    const r = transition(s, e);
    t.equal(r.state, s, `${s.name} ignores ${e.type}`);
    t.same(r.effects, []);
  }
});

t.test('button: a press reopens the window, also after it closed; closing returns', async (t) => {
  const closed = walk([{ type: 'pairing-closed', reason: 'timeout', paired: false }], {
    name: 'pairing',
    dataDir: '/d',
    failedAttempts: 2,
  });
  t.same(closed.state, {
    name: 'pairing',
    dataDir: '/d',
    failedAttempts: 2,
    windowClosed: 'timeout',
  });
  t.same(closed.effects, ['stop-pairing']);
  t.match(describe(closed.state), /closed \(timeout\); press the button/);
  const reopened = transition(closed.state, { type: 'pairing-requested' });
  t.same(reopened.state, { name: 'pairing', dataDir: '/d', failedAttempts: 0 });
  t.same(reopened.effects[0], { type: 'start-pairing', dataDir: '/d', reason: 'button' });
  // a paired hub whose window (opened to add a phone) closes goes back to running
  const back = walk(
    [{ type: 'pairing-requested' }, { type: 'pairing-closed', reason: 'timeout', paired: true }],
    { name: 'running', dataDir: '/d' },
  );
  t.same(back.state, { name: 'running', dataDir: '/d' });
  t.same(
    back.effects,
    ['stop-services', 'start-pairing', 'stop-pairing', 'start-services'],
    'services stop while the window is open and start once when it closes',
  );
});

t.test('factory reset: only with the volume unlocked, then the window opens', async (t) => {
  const r = walk([{ type: 'factory-reset-requested' }], { name: 'running', dataDir: '/d' });
  t.same(r.state, { name: 'pairing', dataDir: '/d', failedAttempts: 0 });
  t.same(r.effects, ['factory-reset']);
  const done = transition(r.state, { type: 'factory-reset-done' });
  t.same(done.effects[0], { type: 'start-pairing', dataDir: '/d', reason: 'factory-reset' });
  for (const s of [
    { name: 'locked', reason: 'x', waitingFor: undefined },
    { name: 'booting' },
    { name: 'updating', dataDir: '/d', version: '2' },
    { name: 'stopping', exitCode: 0 },
  ] satisfies State[])
    t.same(transition(s, { type: 'factory-reset-requested' }), { state: s, effects: [] }, s.name);
  t.equal(
    transition(
      { name: 'degraded', dataDir: '/d', reason: 'x', resume: 'running' },
      { type: 'factory-reset-requested' },
    ).state.name,
    'pairing',
  );
});

t.test('the button opens the window on a degraded hub with its volume', async (t) => {
  const r = transition(
    { name: 'degraded', dataDir: '/d', reason: 'media crash loop', resume: 'running' },
    { type: 'pairing-requested' },
  );
  t.same(r.state, { name: 'pairing', dataDir: '/d', failedAttempts: 0 });
  t.same(
    r.effects.map((e) => e.type),
    ['stop-services', 'start-pairing', 'report-status'],
  );
  const locked = { name: 'degraded', dataDir: undefined, reason: 'x', resume: 'locked' } as const;
  t.same(transition(locked, { type: 'pairing-requested' }), { state: locked, effects: [] });
});
