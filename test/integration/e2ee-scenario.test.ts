/**
 * Hub + 2 phones over hundreds of items: pairing (device PSK, then an admin
 * invite), an epoch per item, both phones decrypt everything, heartbeats keep
 * the journal small, refresh by re-add, removal cuts the removed phone off,
 * state stays flat and a stolen state cannot open the previous item.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import { E2eePhone, PhoneError } from '../../app/e2ee/phone.js';
import { ContainerReader, parseHeader, unwrapContentKey } from '../../protocol/container.js';
import { decodeState, itemWrapKey, loadMlsProfile } from '../../protocol/mls-profile.js';
import { unb64 } from '../../protocol/e2ee-frames.js';
import {
  MemorySink,
  heartbeatRound,
  newDevicePsk,
  openHub,
  pair,
  sealItem,
  sealerFor,
  tempDir,
} from '../../dev/fixtures/paired-hub.js';

const ITEMS = Number(process.env.VIGIL_E2EE_ITEMS ?? 200);

void t.test('hub + 2 phones over hundreds of items', async (t) => {
  const p = await loadMlsProfile();
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const devicePsk = newDevicePsk();
  const hub = await openHub(p, join(root, 'hub'));
  const a = await pair({ p, hub, devicePsk, phoneDir: join(root, 'phoneA') });
  t.ok(a.phone, 'phone A paired with the device PSK');
  const phoneA = a.phone!;
  t.equal(phoneA.admin, true, 'first phone is admin');

  // admin invites phone B with a fresh PSK
  const invReply = await hub.handleConfig(await phoneA.requestInvite());
  const inv = await phoneA.receive(invReply.replies[0]!);
  t.equal(inv.kind, 'invite');
  if (inv.kind !== 'invite') return;
  const invitePsk = { id: unb64(inv.invite.pskId), secret: unb64(inv.invite.psk) };
  t.not(
    Buffer.from(invitePsk.secret).toString('hex'),
    Buffer.from(devicePsk.secret).toString('hex'),
    'fresh PSK per added phone',
  );
  const b = await pair({ p, hub, devicePsk, phonePsk: invitePsk, phoneDir: join(root, 'phoneB') });
  t.ok(b.phone, 'phone B paired with the invite');
  const phoneB = b.phone!;
  t.equal(phoneB.admin, false);
  t.equal(hub.invites.length, 0, 'invite consumed');
  // the invite cannot be used twice
  const again = await pair({
    p,
    hub,
    devicePsk,
    phonePsk: invitePsk,
    phoneDir: join(root, 'phoneB2'),
  });
  t.equal(again.responder.failure?.code, 'EPSK_UNKNOWN');

  const sink = new MemorySink();
  const sealer = sealerFor(hub, sink, 4096);
  const sizes: number[] = [];
  const payloads = new Map<string, Buffer>();
  let prevId: string | undefined;
  for (let i = 0; i < ITEMS; i++) {
    const kind = i % 10 === 9 ? 'thumbnail' : i % 25 === 24 ? 'live' : 'clip';
    const payload = randomBytes(1000 + ((i * 7919) % 12000));
    const id = await sealItem(sealer, payload, kind, 3);
    payloads.set(id, payload);
    for (const ph of [phoneA, phoneB]) {
      const opened = await ph.decryptItem(sink.bytes(id));
      if (!opened.plaintext.equals(payload)) t.fail(`item ${i} differs on ${ph.phoneId}`);
      await ph.acknowledge(id);
    }
    if (i % 20 === 0) {
      const ra = await heartbeatRound(hub, phoneA);
      const rb = await heartbeatRound(hub, phoneB);
      t.same(ra.out.desync, [], 'no desync A');
      t.same(rb.out.desync, [], 'no desync B');
      if (i > 0) t.ok(rb.out.acknowledged.length > 0, 'items acked by both phones are deletable');
    }
    if (kind === 'clip') sizes.push(hub.stateSize(phoneA.phoneId, 'motion'));
    prevId = kind === 'clip' ? id : prevId;
  }
  // one more clip, so prevId is now the previous epoch's item
  const newest = await sealItem(sealer, Buffer.from('newest'));
  for (const ph of [phoneA, phoneB]) await ph.decryptItem(sink.bytes(newest));
  t.equal(
    hub.epoch(phoneA.phoneId, 'motion'),
    phoneA.epoch('motion'),
    'A agrees on the motion epoch',
  );
  t.equal(
    hub.epoch(phoneB.phoneId, 'motion'),
    phoneB.epoch('motion'),
    'B agrees on the motion epoch',
  );
  t.ok(phoneA.epoch('motion') > BigInt(ITEMS / 2), 'an epoch per item');
  t.ok(
    Math.max(...sizes) - Math.min(...sizes) < 64,
    `hub state stays flat (${Math.min(...sizes)}..${Math.max(...sizes)} bytes)`,
  );
  t.ok(phoneA.stateSize('motion') < 8000, 'phone state stays small');

  // A stolen current state cannot open the previous item.
  const stolen = decodeState(p, phoneA.exportState('motion'), phoneA.config)!;
  const prev = parseHeader(sink.bytes(prevId!));
  t.ok(prev.ok);
  if (prev.ok) {
    const idx = prev.value.header.core.recipients.findIndex((r) =>
      Buffer.from(r.groupId).equals(Buffer.from(phoneA.groupId('motion'))),
    );
    const wk = await itemWrapKey(p, stolen, prev.value.header.core.itemId);
    const r = unwrapContentKey(wk, prev.value.header, idx);
    t.notOk(r.ok, 'the current epoch key does not unwrap the previous item');
  }

  // Journal stays bounded by heartbeats.
  await heartbeatRound(hub, phoneA);
  await heartbeatRound(hub, phoneB);
  t.ok(
    hub.journal.records.length <= 1,
    `journal pruned after heartbeats (${hub.journal.records.length})`,
  );

  // Refresh by re-add: B offers a fresh key package, the next clip carries a Welcome for B.
  await heartbeatRound(hub, phoneB, { refresh: ['motion'] });
  t.same(hub.pendingRefreshes, [`${phoneB.phoneId}/motion`]);
  const refreshed = await sealItem(sealer, Buffer.from('after refresh'));
  t.equal((await phoneB.decryptItem(sink.bytes(refreshed))).plaintext.toString(), 'after refresh');
  t.equal((await phoneA.decryptItem(sink.bytes(refreshed))).plaintext.toString(), 'after refresh');
  t.same(hub.pendingRefreshes, []);
  const afterRefresh = await sealItem(sealer, Buffer.from('next'));
  t.equal(
    (await phoneB.decryptItem(sink.bytes(afterRefresh))).plaintext.toString(),
    'next',
    'B continues after re-add',
  );

  // Phone B restarts from disk and still decrypts stored items.
  const reopened = await E2eePhone.open({
    dir: join(root, 'phoneB'),
    fs: new DurableFs(),
    profile: p,
  });
  t.equal(reopened?.epoch('motion'), phoneB.epoch('motion'));
  const any = [...payloads.keys()][5]!;
  t.ok(
    (await reopened!.decryptStored(sink.bytes(any))).plaintext.equals(payloads.get(any)!),
    'acknowledged item decrypts after restart',
  );

  // Non-admin cannot remove; admin removes B; B cannot read the next item.
  const refused = await hub.handleConfig(await phoneB.requestRemove(phoneA.phoneId));
  await t.rejects(phoneB.receive(refused.replies[0]!), { code: 'EREQUEST_FAILED' });
  const rm = await hub.handleConfig(await phoneA.requestRemove(phoneB.phoneId));
  const removed = await phoneA.receive(rm.replies[0]!);
  t.equal(removed.kind, 'removed');
  t.equal(hub.phones.length, 1);
  const afterRemoval = await sealItem(sealer, Buffer.from('secret after removal'));
  await t.rejects(
    reopened!.decryptItem(sink.bytes(afterRemoval)),
    { code: 'ENOT_RECIPIENT' },
    'removed phone cannot read the next epoch',
  );
  // A skipped the 'afterRefresh' item: the gap is reported, a heartbeat catches up. Since
  // retention may drop items (issue #16), the phone catches up only to just below the item
  // that reported the gap: that item carries its own commit, so one missed commit is re-sent.
  await t.rejects(phoneA.decryptItem(sink.bytes(afterRemoval)), { code: 'EEPOCH_GAP' });
  const caught = await heartbeatRound(hub, phoneA);
  t.equal(
    caught.inbound[0]?.kind === 'heartbeat-ack' ? caught.inbound[0].caughtUp : -1,
    1,
    'the missed commit below the reported item is re-sent from the journal',
  );
  t.equal(
    (await phoneA.decryptItem(sink.bytes(afterRemoval))).plaintext.toString(),
    'secret after removal',
  );
  // ...and even with its old motion state it cannot derive the new item key
  const hdr = parseHeader(sink.bytes(afterRemoval));
  if (hdr.ok) {
    const old = decodeState(p, reopened!.exportState('motion'), reopened!.config)!;
    const wk = await itemWrapKey(p, old, hdr.value.header.core.itemId);
    for (let i = 0; i < hdr.value.header.wraps.length; i++)
      t.notOk(unwrapContentKey(wk, hdr.value.header, i).ok);
  }
  // removed phone's config messages are refused
  await t.rejects(hub.handleConfig(await reopened!.heartbeat()), { code: 'EUNKNOWN_GROUP' });

  // Hub restart keeps everything.
  const hub2 = await openHub(p, join(root, 'hub'));
  t.equal(hub2.epoch(phoneA.phoneId, 'motion'), phoneA.epoch('motion'));
  const s2 = sealerFor(hub2, sink);
  const last = await sealItem(s2, Buffer.from('after hub restart'));
  t.equal((await phoneA.decryptItem(sink.bytes(last))).plaintext.toString(), 'after hub restart');
  t.type(PhoneError, 'function');
  t.type(ContainerReader, 'function');
});
