// `vigil ota os-confirm`'s health check (ota/os-cli.ts hubServiceHealth): the hub unit active
// AND its data volume open. A trial whose hub is active but cannot unlock the card's volume is
// not healthy (session 8 found a v2 that was committed that way).
import t from 'tap';
import { hubServiceHealth } from '../../ota/os-cli.js';

const ctx = (signal: AbortSignal) => ({ slotDir: '/', version: '2.0.0', signal });

t.test('active and the volume open: healthy', async (tt) => {
  const h = hubServiceHealth({
    unitState: () => Promise.resolve({ active: true, state: 'active' }),
    storageOpen: () => Promise.resolve(true),
  });
  const r = await h.check(ctx(new AbortController().signal));
  tt.equal(r.ok, true);
  tt.same(r.checks.storage, { ok: true, detail: 'data volume open' });
});

t.test('a unit that is not active fails at once, storage not even asked', async (tt) => {
  let asked = 0;
  const h = hubServiceHealth({
    unitState: () => Promise.resolve({ active: false, state: 'activating' }),
    storageOpen: () => {
      asked++;
      return Promise.resolve(true);
    },
  });
  const r = await h.check(ctx(new AbortController().signal));
  tt.equal(r.ok, false);
  tt.same(r.checks.hub, { ok: false, detail: 'activating' });
  tt.equal(asked, 0);
});

t.test('active but locked: looked at again until the volume opens', async (tt) => {
  let looks = 0;
  const h = hubServiceHealth({
    unitState: () => Promise.resolve({ active: true, state: 'active' }),
    // the hub unlocks on the third look
    storageOpen: () => Promise.resolve(++looks >= 3),
    pollMs: 1,
  });
  const r = await h.check(ctx(new AbortController().signal));
  tt.equal(r.ok, true);
  tt.equal(looks, 3);
});

t.test('active but locked until the trial deadline: not healthy, says why', async (tt) => {
  const ac = new AbortController();
  let looks = 0;
  const h = hubServiceHealth({
    unitState: () => Promise.resolve({ active: true, state: 'active' }),
    storageOpen: () => {
      // the deadline ends the check after a few looks (an event, not a timer)
      if (++looks === 3) ac.abort();
      return Promise.resolve(false);
    },
    pollMs: 1,
  });
  const r = await h.check(ctx(ac.signal));
  tt.equal(r.ok, false);
  tt.same(r.checks.storage, { ok: false, detail: 'the data volume is still locked' });
  tt.equal(looks, 3);
});

t.test('the hub stops while the volume is locked: the unit state decides', async (tt) => {
  let n = 0;
  const h = hubServiceHealth({
    unitState: () =>
      Promise.resolve(
        n++ < 2 ? { active: true, state: 'active' } : { active: false, state: 'failed' },
      ),
    storageOpen: () => Promise.resolve(false),
    pollMs: 1,
  });
  const r = await h.check(ctx(new AbortController().signal));
  tt.equal(r.ok, false);
  tt.same(r.checks.hub, { ok: false, detail: 'failed' });
});
