import t from 'tap';
import type { Test } from 'tap';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DurableFs } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { MemoryLogger } from '../../../base/logger.js';
import {
  RelayPhoneUnlock,
  UNLOCK_CHANNEL_FILE,
  UnlockChannelStore,
} from '../../../firmware/storage/phone-unlock.js';
import type { UnlockChannel } from '../../../firmware/storage/phone-unlock.js';
import { sealAnswer, verifyChallenge, verifyStatus } from '../../../protocol/unlock.js';
import type { UnlockChallenge } from '../../../protocol/unlock.js';
import { MemoryMailbox } from './unlock-relay-fixture.js';

const RELAY = {
  url: 'http://127.0.0.1:9/',
  deviceId: 'hub-0001',
  token: 'd.hub-0001.' + 'x'.repeat(43),
};
const UUID = '0b0e6f7e-3c8c-4a4e-9d7e-1f2a3b4c5d6e';

async function setup(t: Test) {
  const root = await mkdtemp(join(tmpdir(), 'vigil-punlock-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const paths = new HostPaths(root);
  const store = new UnlockChannelStore({ paths, fs: new DurableFs() });
  return { root, paths, store };
}

const until = async (p: () => boolean): Promise<void> => {
  const end = Date.now() + 120_000; // a deadline for a loaded machine, not a pace
  while (!p() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  if (!p()) throw new Error('timed out');
};

void t.test('channel store: outside the volume, 0600, keys kept per volume', async (t) => {
  const { store, paths } = await setup(t);
  t.equal(store.file, paths.host(UNLOCK_CHANNEL_FILE));
  t.equal(await store.load(), undefined, 'nothing before set-up');
  const a = await store.ensure({ deviceId: 'hub-0001', luksUuid: UUID, relay: RELAY });
  t.equal(a.created, true);
  t.equal((await stat(store.file)).mode & 0o777, 0o600);
  t.equal((await stat(dirname(store.file))).mode & 0o777, 0o700);
  const again = await store.ensure({ deviceId: 'hub-0001', luksUuid: UUID, relay: RELAY });
  t.equal(again.created, false, 'idempotent');
  t.same(again.channel.unlockKey.publicKey, a.channel.unlockKey.publicKey);
  const moved = await store.ensure({
    deviceId: 'hub-0001',
    luksUuid: UUID,
    relay: { ...RELAY, url: 'https://relay.example/' },
  });
  t.equal(moved.created, false, 'a new relay URL keeps the keys');
  t.same(moved.channel.signKey.publicKey, a.channel.signKey.publicKey);
  t.equal((await store.load())?.relay.url, 'https://relay.example/');
  const fresh = await store.ensure({
    deviceId: 'hub-0001',
    luksUuid: 'ffff-0000-1111',
    relay: RELAY,
  });
  t.equal(fresh.created, true, 'a new volume gets new keys');
  t.not(
    Buffer.from(fresh.channel.unlockKey.publicKey).toString('hex'),
    Buffer.from(a.channel.unlockKey.publicKey).toString('hex'),
  );

  await writeFile(store.file, '{"format":"nope"}');
  await t.rejects(store.load(), { code: 'EUNLOCK_CHANNEL' }, 'damaged file: clear error');
  const repaired = await store.ensure({ deviceId: 'hub-0001', luksUuid: UUID, relay: RELAY });
  t.equal(repaired.created, true, 'a damaged file is replaced');
  t.match(await readFile(store.file, 'utf8'), /vigil-unlock-channel/);
});

async function channelWithPort(t: Test, opts: { ttlMs?: number } = {}) {
  const { store } = await setup(t);
  const { channel } = await store.ensure({ deviceId: 'hub-0001', luksUuid: UUID, relay: RELAY });
  const box = new MemoryMailbox();
  const log = new MemoryLogger('hub');
  let now = 1_800_000_000_000;
  const port = new RelayPhoneUnlock({
    channel: () => store.load(),
    logger: log,
    relay: () => box.hub,
    now: () => now,
    pollWaitMs: 20,
    backoff: { initialMs: 5, maxMs: 20 },
    ...(opts.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}),
  });
  return {
    channel,
    box,
    log,
    port,
    advance: (ms: number) => {
      now += ms;
    },
    now: () => now,
  };
}

function phoneChallenge(box: MemoryMailbox, ch: UnlockChannel, now: number): UnlockChallenge {
  const m = box.msgs.filter((x) => x.to === 'phone').at(-1);
  if (!m) throw new Error('no challenge posted');
  return verifyChallenge(m.bytes, {
    deviceId: 'hub-0001',
    signPublicKey: ch.signKey.publicKey,
    now,
  });
}

void t.test('an expired challenge is replaced; an answer to it is stale', async (t) => {
  const w = await channelWithPort(t, { ttlMs: 1000 });
  const key = randomBytes(32);
  const ac = new AbortController();
  const got = w.port.requestKey('no-key: nothing opened it', ac.signal);
  await until(() => w.port.challenges.length === 1);
  const c1 = phoneChallenge(w.box, w.channel, w.now());
  t.equal(c1.reason, 'no-key: nothing opened it');
  w.advance(5000);
  await until(() => w.port.challenges.length === 2);
  const late = await w.box
    .phone()
    .postUp('unlock', sealAnswer(c1, key, w.channel.unlockKey.publicKey));
  t.ok(late.seq > 0);
  await until(() => w.port.refused.length === 1);
  t.match(w.port.refused[0], { code: 'EUNLOCK_STALE', from: 'phone-1' });
  const status = w.box.msgs.find((m) => m.to === 'phone' && m.bytes.includes('unlock-status'));
  t.ok(status, 'the phone hears it was refused');
  t.match(
    verifyStatus(status?.bytes ?? Buffer.alloc(0), {
      deviceId: 'hub-0001',
      signPublicKey: w.channel.signKey.publicKey,
    }),
    { state: 'refused', nonce: c1.nonce },
  );
  const c2 = w.port.challenges[1];
  if (!c2) throw new Error('no second challenge');
  await w.box.phone().postUp('unlock', sealAnswer(c2, key, w.channel.unlockKey.publicKey));
  t.same(Buffer.from(await got), key, 'the fresh challenge is answered');
});

void t.test('relay outages are retried; garbage is refused; abort stops', async (t) => {
  const w = await channelWithPort(t);
  w.box.failures = 3;
  const ac = new AbortController();
  const got = w.port.requestKey('locked', ac.signal);
  await until(() => w.port.challenges.length === 1);
  t.ok(
    w.log.lines.some((l) => l.includes('relay unreachable; retrying')),
    'outage logged',
  );
  await w.box.phone().postUp('unlock', Buffer.from('not json'));
  await until(() => w.port.refused.length === 1);
  t.match(w.port.refused[0], { code: 'EUNLOCK_FORMAT' });
  ac.abort();
  await t.rejects(got, { code: 'EUNLOCK_ABORTED' });
});

void t.test(
  'a delivered key that fails: the phone hears "wrong-key", a new challenge follows',
  async (t) => {
    const w = await channelWithPort(t);
    const ac = new AbortController();
    const first = w.port.requestKey('locked', ac.signal);
    await until(() => w.port.challenges.length === 1);
    const c1 = w.port.challenges[0];
    if (!c1) throw new Error('no challenge');
    await w.box
      .phone()
      .postUp('unlock', sealAnswer(c1, randomBytes(32), w.channel.unlockKey.publicKey));
    await first;
    const second = w.port.requestKey('wrong-key: the phone key did not open it', ac.signal);
    await until(() => w.port.challenges.length === 2);
    const statuses = w.box.msgs
      .filter((m) => m.to === 'phone' && m.bytes.includes('unlock-status'))
      .map((m) =>
        verifyStatus(m.bytes, { deviceId: 'hub-0001', signPublicKey: w.channel.signKey.publicKey }),
      );
    t.match(statuses, [{ state: 'wrong-key', nonce: c1.nonce }]);
    ac.abort();
    await t.rejects(second, { code: 'EUNLOCK_ABORTED' });
    // confirmUnlocked without a delivered key does nothing
    const before = w.box.msgs.length;
    await w.port.confirmUnlocked();
    t.equal(w.box.msgs.length, before);
  },
);
