import t from 'tap';
import {
  INITIAL_WINDOW,
  MAX_FAILED_ATTEMPTS,
  PairingWindow,
  WINDOW_MS,
  admit,
  transition,
} from '../../../firmware/pairing/window.js';
import type { Clock } from '../../../base/clock.js';

void t.test(
  'pure policy: 15 minutes, 20 failures, the 21st refused, reopening resets',
  async (t) => {
    let s = transition(INITIAL_WINDOW, { type: 'opened', reason: 'first-boot', at: 0 });
    t.ok(admit(s, 1).ok);
    for (let i = 1; i < MAX_FAILED_ATTEMPTS; i++)
      s = transition(s, { type: 'attempt-failed', at: i });
    t.ok(s.open, '19 failures: still open');
    t.ok(admit(s, 100).ok, 'the 20th attempt is admitted');
    s = transition(s, { type: 'attempt-failed', at: 101 });
    t.same(s, { open: false, closedBy: 'failures', failures: 20 });
    t.match(admit(s, 102), { ok: false, code: 'EWINDOW_FAILURES' }, 'the 21st is refused');
    s = transition(s, { type: 'opened', reason: 'button', at: 200 });
    t.same(s, { open: true, reason: 'button', openedAt: 200, failures: 0 });
    t.ok(admit(s, 200 + WINDOW_MS - 1).ok);
    t.match(admit(s, 200 + WINDOW_MS), { ok: false, code: 'EWINDOW_CLOSED' });
    t.same(transition(s, { type: 'tick', at: 200 + WINDOW_MS }), {
      open: false,
      closedBy: 'timeout',
      failures: 0,
    });
    t.same(transition(s, { type: 'attempt-failed', at: 200 + WINDOW_MS }), {
      open: false,
      closedBy: 'timeout',
      failures: 1,
    });
    t.same(transition(s, { type: 'paired', at: 300 }), {
      open: false,
      closedBy: 'paired',
      failures: 0,
    });
    t.same(transition(s, { type: 'cancelled', at: 300 }), {
      open: false,
      closedBy: 'cancelled',
      failures: 0,
    });
    t.equal(
      transition(INITIAL_WINDOW, { type: 'attempt-failed', at: 1 }),
      INITIAL_WINDOW,
      'failures while closed do nothing',
    );
    t.equal(transition(INITIAL_WINDOW, { type: 'cancelled', at: 1 }), INITIAL_WINDOW);
    t.match(admit(INITIAL_WINDOW, 0), { ok: false, code: 'EWINDOW_CLOSED' });
  },
);

void t.test('PairingWindow: timer closes it after 15 minutes; events', async (t) => {
  let now = 1000;
  const timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  const clock: Clock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      const rec = { at: now + ms, fn, cancelled: false };
      timers.push(rec);
      return { cancel: () => (rec.cancelled = true) };
    },
  };
  const w = new PairingWindow(clock);
  const events: string[] = [];
  w.on('opened', (r) => events.push(`opened ${r}`));
  w.on('closed', (r) => events.push(`closed ${r}`));
  w.open('factory-reset');
  t.ok(w.isOpen);
  now += WINDOW_MS;
  for (const tm of timers) if (!tm.cancelled && tm.at <= now) tm.fn();
  t.notOk(w.isOpen);
  t.same(events, ['opened factory-reset', 'closed timeout']);
  w.open('button');
  for (let i = 0; i < MAX_FAILED_ATTEMPTS; i++) w.failed();
  t.match(w.admit(), { ok: false, code: 'EWINDOW_FAILURES' });
  t.same(events.slice(2), ['opened button', 'closed failures']);
  w.open('button');
  w.paired();
  w.cancel();
  t.same(events.slice(4), ['opened button', 'closed paired']);
  t.ok(
    timers.slice(0, -1).every((x) => x.cancelled || x.at <= now),
    'old timers cancelled',
  );
});
