/**
 * Pathless epoch advances (docs/decisions.md "Pathless epoch advances"): between
 * commits with an UpdatePath the hub advances a phone's group with a commit whose
 * only proposal is the group's resumption PSK; the phone opens every item either
 * way, a path comes back on the cadence, after a restart, and always for a phone
 * whose leaf does not list PATHLESS_ADVANCE_CAPABILITY.
 */
import t from 'tap';
import type { Test } from 'tap';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { MlsHub, PATH_EVERY, type PathCadence } from '../../../firmware/mls/hub.js';
import type { E2eePhone } from '../../../app/e2ee/phone.js';
import {
  acceptsPathlessAdvance,
  decodeState,
  leafIndexOf,
  loadMlsProfile,
  type LeafCapabilityOptions,
} from '../../../protocol/mls-profile.js';
import {
  DEVICE_ID,
  MemorySink,
  heartbeatRound,
  hubLeafKey,
  newDevicePsk,
  pair,
  sealItem,
  sealerFor,
  tempDir,
} from '../../../dev/fixtures/paired-hub.js';

const p = await loadMlsProfile();

interface Rig {
  hub: MlsHub;
  phone: E2eePhone;
  clock: { now: number };
  reopen: () => Promise<MlsHub>;
}

async function rig(
  t: Test,
  o: { pathEvery?: PathCadence; leaf?: LeafCapabilityOptions } = {},
): Promise<Rig> {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const clock = { now: 1_790_000_000_000 };
  const reopen = (): Promise<MlsHub> =>
    MlsHub.open({
      dir: join(root, 'hub'),
      fs: new DurableFs(),
      deviceId: DEVICE_ID,
      profile: p,
      now: () => clock.now,
      ...(o.pathEvery ? { pathEvery: o.pathEvery } : {}),
    });
  const hub = await reopen();
  const { phone } = await pair({
    p,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone'),
    ...(o.leaf ? { leaf: o.leaf } : {}),
  });
  if (phone === undefined) throw new Error('pairing failed');
  return { hub, phone, clock, reopen };
}

/** The hub's motion group with this phone, from the durable group file. */
async function motionState(hub: MlsHub, phoneId: string) {
  const f = await hub.store.readGroup(phoneId, 'motion');
  return decodeState(p, f!.state, hub.config)!;
}

/**
 * Seal one clip and open it on the phone. 'path' when the advance replaced the
 * hub's leaf key (an UpdatePath), 'pathless' when it left the tree as it was.
 */
async function advance(t: Test, hub: MlsHub, phone: E2eePhone, text: string) {
  const before = await hubLeafKey(hub, phone.phoneId);
  const epoch = (await motionState(hub, phone.phoneId)).groupContext.epoch;
  const sink = new MemorySink();
  const id = await sealItem(sealerFor(hub, sink), Buffer.from(text));
  const after = await hubLeafKey(hub, phone.phoneId);
  const durable = (await motionState(hub, phone.phoneId)).groupContext.epoch;
  t.equal(durable, epoch + 1n, `${text}: one epoch`);
  const opened = await phone.decryptItem(sink.bytes(id));
  t.equal(opened.plaintext.toString(), text, `${text}: the phone opens it`);
  t.equal(phone.epoch('motion'), durable, `${text}: the phone is in step`);
  return before.equals(after) ? 'pathless' : 'path';
}

void t.test(
  'the cadence: a path every Nth advance, after a quiet spell, after a restart',
  async (t) => {
    const r = await rig(t, { pathEvery: { advances: 4, ms: 60_000 } });
    const kinds: string[] = [];
    for (let i = 1; i <= 10; i++) kinds.push(await advance(t, r.hub, r.phone, `item ${String(i)}`));
    t.same(
      kinds,
      [
        'path',
        'pathless',
        'pathless',
        'pathless',
        'path',
        'pathless',
        'pathless',
        'pathless',
      ].concat(['path', 'pathless']),
      'the first advance after start carries a path, then every 4th',
    );
    r.clock.now += 59_999;
    t.equal(await advance(t, r.hub, r.phone, 'just inside'), 'pathless', 'not yet due by time');
    r.clock.now += 1;
    t.equal(
      await advance(t, r.hub, r.phone, 'quiet spell'),
      'path',
      'due: the last path is 60 s old',
    );
    t.equal(await advance(t, r.hub, r.phone, 'after it'), 'pathless');
    const restarted = await r.reopen();
    t.equal(
      await advance(t, restarted, r.phone, 'after restart'),
      'path',
      'the cadence is not persisted: the first advance after a restart carries a path',
    );
    t.equal(await advance(t, restarted, r.phone, 'then'), 'pathless');
    const hb = await heartbeatRound(restarted, r.phone);
    t.same(hb.out.desync, [], 'the epoch checks agree in every group');
  },
);

void t.test('the default cadence is pathless between paths', async (t) => {
  t.same(PATH_EVERY, { advances: 10, ms: 600_000 }, 'every 10th advance, every 10 minutes');
  const r = await rig(t);
  t.equal(await advance(t, r.hub, r.phone, 'first'), 'path');
  t.equal(await advance(t, r.hub, r.phone, 'second'), 'pathless');
  t.equal(await advance(t, r.hub, r.phone, 'third'), 'pathless');
  t.equal(r.hub.pathEvery, PATH_EVERY);
});

void t.test('advances: 1 puts a path in every advance', async (t) => {
  const r = await rig(t, { pathEvery: { advances: 1, ms: 600_000 } });
  for (const x of ['a', 'b', 'c']) t.equal(await advance(t, r.hub, r.phone, x), 'path');
});

void t.test(
  'a phone whose leaf lacks the capability gets a path every time, until a refresh brings it',
  async (t) => {
    const r = await rig(t, { leaf: { withoutPathlessAdvance: true } });
    const st = await motionState(r.hub, r.phone.phoneId);
    const phoneLeaf = leafIndexOf(st, r.phone.signing.identity)!;
    t.notOk(acceptsPathlessAdvance(st, phoneLeaf), 'the old leaf does not list it');
    t.ok(acceptsPathlessAdvance(st, leafIndexOf(st, r.hub.signing.identity)!), 'the hub leaf does');
    for (const x of ['a', 'b', 'c']) t.equal(await advance(t, r.hub, r.phone, x), 'path');
    // the phone's refresh (a new leaf from today's key package) is re-added by the next advance
    await heartbeatRound(r.hub, r.phone, { refresh: ['motion'] });
    t.equal(await advance(t, r.hub, r.phone, 'refresh'), 'path', 'the re-add carries a path');
    const after = await motionState(r.hub, r.phone.phoneId);
    const newLeaf = leafIndexOf(after, r.phone.signing.identity)!;
    t.ok(acceptsPathlessAdvance(after, newLeaf), 'the refreshed leaf lists it');
    t.equal(await advance(t, r.hub, r.phone, 'next'), 'pathless');
  },
);

void t.test('a phone that missed pathless advances catches up through a heartbeat', async (t) => {
  const r = await rig(t, { pathEvery: { advances: 3, ms: 600_000 } });
  const sink = new MemorySink();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++)
    ids.push(await sealItem(sealerFor(r.hub, sink), Buffer.from(`missed ${String(i)}`)));
  const last = ids.at(-1)!;
  await t.rejects(r.phone.decryptItem(sink.bytes(last)), { code: 'EEPOCH_GAP' });
  const hb = await heartbeatRound(r.hub, r.phone);
  t.same(hb.out.desync, []);
  t.equal(
    (await r.phone.decryptItem(sink.bytes(last))).plaintext.toString(),
    'missed 4',
    'the catch-up processed path and pathless commits alike',
  );
  t.equal(r.phone.epoch('motion'), r.hub.epoch(r.phone.phoneId, 'motion'));
});

void t.test('a bad cadence is refused in one line', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const bad: [PathCadence, string | RegExp][] = [
    ...[0, 1.5, -1].map((advances): [PathCadence, RegExp] => [
      { advances, ms: 1000 },
      /^pathEvery\.advances must be a whole number ≥ 1, got /,
    ]),
    [{ advances: 2, ms: NaN }, 'pathEvery.ms must be ≥ 0, got NaN'],
  ];
  for (const [pathEvery, message] of bad)
    await t.rejects(
      MlsHub.open({ dir: root, fs: new DurableFs(), deviceId: DEVICE_ID, profile: p, pathEvery }),
      { message },
    );
  t.same(readdirSync(root), [], 'refused before anything was written');
});
