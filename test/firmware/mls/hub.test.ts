import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrashController, DurableFs, SimulatedCrash } from '../../../hw/os/fs.js';
import { MlsHub } from '../../../firmware/mls/hub.js';
import {
  decodeState,
  encodeMessage,
  encodeState,
  loadMlsProfile,
} from '../../../protocol/mls-profile.js';
import { b64 } from '../../../protocol/e2ee-frames.js';
import {
  DEVICE_ID,
  MemorySink,
  heartbeatRound,
  newDevicePsk,
  openHub,
  pair,
  sealItem,
  sealerFor,
  tempDir,
} from '../../../dev/fixtures/paired-hub.js';

const p = await loadMlsProfile();

/** A hub in a temporary directory (removed after the test) paired with one phone. */
async function pairedInTemp(t: Test) {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const dir = join(root, 'hub');
  const hub = await openHub(p, dir);
  const { phone } = await pair({
    p,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone'),
  });
  if (phone === undefined) throw new Error('pairing failed');
  return { root, dir, hub, phone, phoneId: phone.phoneId };
}

void t.test(
  'journal: a crash after the record, before the group file: the entry is dropped on open, the epoch made again',
  async (t) => {
    const { root, hub, phone } = await pairedInTemp(t);
    const before = hub.epoch(phone.phoneId, 'motion');
    // trace one advance: the record, then the group file; nothing else
    const trace = new CrashController();
    const h1 = await MlsHub.open({
      dir: join(root, 'hub'),
      fs: new DurableFs(trace),
      deviceId: DEVICE_ID,
      profile: p,
    });
    const n0 = trace.count;
    await h1.advance('motion', randomBytes(16));
    const labels = trace.trace.slice(n0).map((x) => x.label);
    t.same(
      [...new Set(labels.map((l) => l.split(':')[0]))],
      ['mls-journal', 'mls-group-motion'],
      'two durable writes per advance with one phone: the record, then the group file',
    );
    t.ok(
      h1.journal.records.every((r) => r.entries.every((e) => e.state === undefined)),
      'the record never holds a state',
    );
    // crash right after the record is durable, before the group file moves
    const at = trace.trace.find((x, i) => i >= n0 && x.label === 'mls-journal:dir-fsynced')!.n - n0;
    const crash = new CrashController({ at, mode: 'power-loss', delivery: 'throw' });
    const h2 = await MlsHub.open({
      dir: join(root, 'hub'),
      fs: new DurableFs(crash),
      deviceId: DEVICE_ID,
      profile: p,
    });
    t.equal(crash.count, 0, 'opening a clean hub passes no crash point');
    await t.rejects(h2.advance('motion', randomBytes(16)), SimulatedCrash);
    t.equal(readdirSync(join(root, 'hub', 'journal')).length, 2, 'both records are on disk');
    const h3 = await openHub(p, join(root, 'hub'));
    t.equal(h3.epoch(phone.phoneId, 'motion'), before + 1n, 'the group file decides the epoch');
    t.same(
      h3.journal.records.flatMap((r) => r.entries.map((e) => e.epoch)),
      [(before + 1n).toString()],
      'the entry the group file does not back is gone, on disk too',
    );
    t.equal(readdirSync(join(root, 'hub', 'journal')).length, 1);
    // the phone catches up through a heartbeat; the next epoch is made again and opens
    const out = await heartbeatRound(h3, phone);
    t.same(out.out.desync, []);
    t.equal(phone.epoch('motion'), before + 1n);
    const sink = new MemorySink();
    const id = await sealItem(sealerFor(h3, sink), Buffer.from('after recovery'));
    t.equal((await phone.decryptItem(sink.bytes(id))).plaintext.toString(), 'after recovery');
    t.equal(phone.epoch('motion'), before + 2n);
  },
);

void t.test(
  'journal: a record with states (a hub before the two-write advance) is applied on open, then stripped',
  async (t) => {
    const { dir, hub, phone, phoneId } = await pairedInTemp(t);
    const before = hub.epoch(phoneId, 'motion');
    // what that hub left when it died after its first write: the record with the next state
    const f = await hub.store.readGroup(phoneId, 'motion');
    const st = decodeState(p, f!.state, hub.config)!;
    const r = await p.mls.createCommit({ state: st, cipherSuite: p.cs });
    const seq = 7;
    writeFileSync(
      hub.journal.file(seq),
      JSON.stringify({
        v: 1,
        seq,
        itemId: randomBytes(16).toString('hex'),
        group: 'motion',
        createdAt: 1,
        entries: [
          {
            phoneId,
            epoch: r.newState.groupContext.epoch.toString(),
            handshake: b64(encodeMessage(p, r.commit)),
            state: b64(encodeState(p, r.newState)),
          },
        ],
      }),
    );
    const h2 = await openHub(p, dir);
    t.equal(h2.epoch(phoneId, 'motion'), before + 1n, 'the journalled state was applied');
    const onDisk = JSON.parse(readFileSync(hub.journal.file(seq), 'utf8')) as {
      entries: { state?: string }[];
    };
    t.ok(
      onDisk.entries.every((e) => e.state === undefined),
      'the record on disk holds no state any more',
    );
    const out = await heartbeatRound(h2, phone);
    t.same(out.out.desync, []);
    t.equal(phone.epoch('motion'), before + 1n, 'the phone caught up with its handshake');
    const sink = new MemorySink();
    const id = await sealItem(sealerFor(h2, sink), Buffer.from('next'));
    t.equal((await phone.decryptItem(sink.bytes(id))).plaintext.toString(), 'next');
  },
);

/** Fails the next write of a motion group file, before it or after it reached the disk. */
class FlakyFs extends DurableFs {
  fail: 'before' | 'after' | undefined;
  override async writeFileAtomic(
    path: string,
    data: Uint8Array | string | readonly Uint8Array[],
    label?: string,
  ): Promise<void> {
    const mode = label === 'mls-group-motion' ? this.fail : undefined;
    if (mode !== undefined) this.fail = undefined;
    if (mode === 'before') throw new Error('EIO (simulated) before the write');
    await super.writeFileAtomic(path, data, label);
    if (mode === 'after') throw new Error('EIO (simulated) after the write');
  }
}

for (const mode of ['before', 'after'] as const)
  void t.test(
    `a group write that fails (${mode} it reached the disk): that phone stays in its epoch, its entry is never sent`,
    async (t) => {
      const { dir, hub, phone, phoneId } = await pairedInTemp(t);
      const e = hub.epoch(phoneId, 'motion');
      const fs = new FlakyFs();
      const h1 = await MlsHub.open({ dir, fs, deviceId: DEVICE_ID, profile: p });
      fs.fail = mode;
      await t.rejects(h1.advance('motion', randomBytes(16)), /EIO \(simulated\)/);
      t.equal(h1.epoch(phoneId, 'motion'), e, 'not merged');
      t.same(
        h1.journal.records.flatMap((r) => r.entries),
        [],
        'its entry left the record in memory',
      );
      await h1.advance('motion', randomBytes(16));
      t.equal(h1.epoch(phoneId, 'motion'), e + 1n, 'the epoch is made again');
      t.equal(readdirSync(join(dir, 'journal')).length, 2, 'both records are on disk');
      // across a restart: one entry per epoch, the group file's
      const h2 = await openHub(p, dir);
      t.equal(h2.epoch(phoneId, 'motion'), e + 1n);
      t.equal(h2.journal.records.flatMap((r) => r.entries).length, 1);
      t.equal(readdirSync(join(dir, 'journal')).length, 1, 'the dropped entry left the disk too');
      const out = await heartbeatRound(h2, phone);
      t.same(out.out.desync, [], 'the phone catches up with the commit the group file took');
      t.equal(phone.epoch('motion'), e + 1n);
      const sink = new MemorySink();
      const id = await sealItem(sealerFor(h2, sink), Buffer.from('still in step'));
      t.equal((await phone.decryptItem(sink.bytes(id))).plaintext.toString(), 'still in step');
    },
  );

void t.test('open: wrong device, corrupt files, orphan group files', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const dir = join(root, 'hub');
  const hub = await openHub(p, dir);
  t.same(hub.phones, []);
  await t.rejects(MlsHub.open({ dir, fs: new DurableFs(), deviceId: 'other', profile: p }), {
    code: 'EMLS_STATE_CORRUPT',
  });
  writeFileSync(join(dir, 'groups', 'abcdef0123456789.motion.state'), 'orphan');
  await openHub(p, dir);
  t.same(
    readdirSync(join(dir, 'groups')),
    [],
    'orphan group files of unfinished pairings are removed',
  );
  writeFileSync(join(dir, 'journal', '000000000001.rec'), '{bad');
  await t.rejects(openHub(p, dir), { code: 'EMLS_STATE_CORRUPT' });
  rmSync(join(dir, 'journal', '000000000001.rec'));
  writeFileSync(join(dir, 'hub.json'), '{"version":1}');
  await t.rejects(openHub(p, dir), { code: 'EMLS_STATE_CORRUPT' });
});

void t.test(
  'config group: admin rules, phones cannot send hub messages, unknown phones',
  async (t) => {
    const root = tempDir();
    t.teardown(() => {
      rmSync(root, { recursive: true, force: true });
    });
    const hub = await openHub(p, join(root, 'hub'));
    const psk = newDevicePsk();
    const a = (await pair({ p, hub, devicePsk: psk, phoneDir: join(root, 'a') })).phone!;
    await t.rejects(hub.handleConfig(await a.send({ t: 'notice', at: 1, kind: 'x', text: 'y' })), {
      code: 'EMLS_REJECTED',
    });
    await t.rejects(hub.handleConfig(Buffer.from('garbage')), { code: 'EVALIDATION' });
    const rm = await hub.handleConfig(await a.requestRemove('00000000deadbeef'));
    await t.rejects(a.receive(rm.replies[0]!), {
      code: 'EREQUEST_FAILED',
      details: { code: 'EUNKNOWN_PHONE' },
    });
    t.throws(() => hub.epoch('nope', 'motion'), { code: 'EUNKNOWN_PHONE' });
    await t.rejects(hub.removePhone('nope'), { code: 'EUNKNOWN_PHONE' });
    const inv = await hub.createInvite('test');
    t.ok(hub.findInvite(Buffer.from(inv.pskId, 'base64url')));
    // the admin can remove itself; then nothing can be sealed
    await hub.handleConfig(await a.requestRemove(a.phoneId));
    t.equal(hub.phones.length, 0);
    await t.rejects(hub.advance('motion', randomBytes(16)), { code: 'ENO_PHONES' });
  },
);

void t.test('a refresh offer with a foreign key package is reported, not folded', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const phone = (await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'a') }))
    .phone!;
  const { newKeyPackage, newSigningIdentity, phoneIdentity, encodeKeyPackageMessage } =
    await import('../../../protocol/mls-profile.js');
  const { b64 } = await import('../../../protocol/e2ee-frames.js');
  const thief = await newSigningIdentity(p, phoneIdentity(phone.phoneId));
  const kp = await newKeyPackage(p, thief, Date.now());
  const out = await hub.handleConfig(
    await phone.send({
      t: 'heartbeat',
      seq: 1,
      sentAt: 0,
      epochs: {},
      checks: {},
      acks: [],
      refresh: [{ group: 'motion', keyPackage: b64(encodeKeyPackageMessage(p, kp.publicPackage)) }],
    }),
  );
  // the shape docs/protocol.md gives for a rejected refresh: the offer's group, the epoch the
  // heartbeat reported for it ("0" when none), the hub's epoch, and a reason naming the refusal
  t.same(
    out.desync.find((d) => d.reason.startsWith('refresh key package rejected')),
    {
      group: 'motion',
      phoneEpoch: '0',
      hubEpoch: hub.epoch(phone.phoneId, 'motion').toString(),
      reason: "refresh key package rejected: not this phone's pinned credential",
    },
  );
  t.ok(
    out.desync.some((d) => /did not report/.test(d.reason)),
    'missing epochs are reported too: a heartbeat covers all five groups',
  );
  t.equal(out.desync.length, 6, 'five unreported groups + the refused refresh');
  t.same(hub.pendingRefreshes, []);
});

void t.test('a refresh offer for the config group is reported, not dropped silently', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const phone = (await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'a') }))
    .phone!;
  const { newKeyPackage, encodeKeyPackageMessage } =
    await import('../../../protocol/mls-profile.js');
  const { b64 } = await import('../../../protocol/e2ee-frames.js');
  // the phone's own pinned credential: only the group is wrong
  const kp = await newKeyPackage(p, phone.signing, Date.now());
  const out = await hub.handleConfig(
    await phone.send({
      t: 'heartbeat',
      seq: 1,
      sentAt: 0,
      epochs: {},
      checks: {},
      acks: [],
      refresh: [{ group: 'config', keyPackage: b64(encodeKeyPackageMessage(p, kp.publicPackage)) }],
    }),
  );
  t.same(
    out.desync.find((d) => d.reason.startsWith('refresh key package rejected')),
    {
      group: 'config',
      phoneEpoch: '0',
      hubEpoch: hub.epoch(phone.phoneId, 'config').toString(),
      reason: 'refresh key package rejected: only motion, thumbnail and livestream are refreshed',
    },
  );
  t.same(hub.pendingRefreshes, []);
});

void t.test('heartbeat seq: the phone counts from 1 per opening, the hub echoes it', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const phone = (await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'a') }))
    .phone!;
  const seqs: number[] = [];
  for (const hb of [await phone.heartbeat(), await phone.heartbeat()]) {
    t.equal(hub.pendingRefreshes.length, 0);
    const out = await hub.handleConfig(hb);
    t.equal(out.message.t, 'heartbeat');
    t.same(out.desync, [], 'all five groups in step');
    const r = await phone.receive(out.replies[0]!);
    if (r.kind === 'heartbeat-ack' && out.message.t === 'heartbeat') {
      t.equal(r.ack.seq, out.message.seq, 'the ack echoes the seq');
      seqs.push(r.ack.seq);
    }
  }
  t.same(seqs, [1, 2], 'counted from 1');
  // out of order (another phone process, or a reopened phone starting again at 1): still answered
  const out = await hub.handleConfig(
    await phone.send({
      t: 'heartbeat',
      seq: 0,
      sentAt: 0,
      epochs: {},
      checks: {},
      acks: [],
      refresh: [],
    }),
  );
  const r = await phone.receive(out.replies[0]!).catch((e: unknown) => e);
  t.equal(out.replies.length, 1, 'seq is not checked: a lower one is answered too');
  t.match(r, { code: 'EDESYNC' }, '(this one reported no groups: a desync)');
});
