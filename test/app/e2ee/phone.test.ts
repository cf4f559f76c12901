import t from 'tap';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import {
  DesyncError,
  E2eePhone,
  REMEMBERED_HANDSHAKES,
  decodePhoneState,
  encodePhoneState,
} from '../../../app/e2ee/phone.js';
import { RECORD_TYPE } from '../../../protocol/container.js';
import { b64 } from '../../../protocol/e2ee-frames.js';
import { loadMlsProfile } from '../../../protocol/mls-profile.js';
import {
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

async function world(t: { teardown(fn: () => void): void }) {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const r = await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'phone') });
  const sink = new MemorySink();
  return { root, hub, phone: r.phone!, sink, sealer: sealerFor(hub, sink, 1024) };
}

void t.test(
  'a gap in one group holds the other groups too: their waiting items still open after the catch-up',
  async (t) => {
    // the relay order after an outage that dropped a clip: thumbnails and clips interleaved;
    // the sync holds every item after the gap until the heartbeat-ack's catch-up is applied
    const { hub, phone, sink, sealer } = await world(t);
    const th1 = await sealItem(sealer, Buffer.from('t1'), 'thumbnail');
    await sealItem(sealer, Buffer.from('dropped clip')); // never reaches the phone
    const th2 = await sealItem(sealer, Buffer.from('t2'), 'thumbnail');
    const clip = await sealItem(sealer, Buffer.from('clip'));
    const th3 = await sealItem(sealer, Buffer.from('t3'), 'thumbnail');
    t.equal((await phone.decryptItem(sink.bytes(th1))).plaintext.toString(), 't1');
    await t.rejects(phone.decryptItem(sink.bytes(clip)), { code: 'EEPOCH_GAP' }, 'the gap');
    // th2 and th3 wait behind it; the catch-up brings motion to just below the clip and
    // leaves the thumbnail group where it is (its waiting items carry its commits)
    const hb = await heartbeatRound(hub, phone);
    t.equal(hb.inbound[0]?.kind === 'heartbeat-ack' ? hb.inbound[0].caughtUp : -1, 1);
    t.equal(phone.epoch('thumbnail') + 2n, hub.epoch(phone.phoneId, 'thumbnail'));
    for (const [id, text] of [
      [clip, 'clip'],
      [th2, 't2'],
      [th3, 't3'],
    ] as const)
      t.equal(
        (await phone.decryptItem(sink.bytes(id))).plaintext.toString(),
        text,
        `${text} opens`,
      );
    // the hold ends with that answer: the next catch-up goes all the way again
    await sealItem(sealer, Buffer.from('t4'), 'thumbnail');
    await heartbeatRound(hub, phone);
    t.equal(phone.epoch('thumbnail'), hub.epoch(phone.phoneId, 'thumbnail'));
  },
);

void t.test('replayed commit, stale epoch and epoch gap are specific errors', async (t) => {
  const { hub, phone, sink, sealer } = await world(t);
  const x = await sealItem(sealer, Buffer.from('x'));
  const y = await sealItem(sealer, Buffer.from('y'));
  t.equal((await phone.decryptItem(sink.bytes(x))).plaintext.toString(), 'x');
  t.equal((await phone.decryptItem(sink.bytes(y))).plaintext.toString(), 'y');
  // the same item again is fine while its key is held (idempotent)
  t.equal((await phone.decryptItem(sink.bytes(x))).plaintext.toString(), 'x');
  await phone.forgetItem(x);
  await t.rejects(
    phone.decryptItem(sink.bytes(x)),
    { code: 'EREPLAYED_COMMIT' },
    'replayed commit',
  );
  // gap
  await sealItem(sealer, Buffer.from('a')); // its commit never reaches the phone directly
  const gapB = await sealItem(sealer, Buffer.from('b'));
  await t.rejects(phone.decryptItem(sink.bytes(gapB)), {
    code: 'EEPOCH_GAP',
    details: { epoch: String(hub.epoch(phone.phoneId, 'motion')) },
  });
  // catch-up stops just below the item that reported the gap: that item brings its own commit
  const first = await heartbeatRound(hub, phone);
  t.equal(
    first.inbound[0]?.kind === 'heartbeat-ack' ? first.inbound[0].caughtUp : 0,
    1,
    'caught up to just below the waiting item',
  );
  t.equal((await phone.decryptItem(sink.bytes(gapB))).plaintext.toString(), 'b', 'it opens');
  // stale: with no item waiting, catch-up goes all the way; an item older than every
  // remembered handshake is then unreadable
  const old: string[] = [];
  for (let i = 0; i < REMEMBERED_HANDSHAKES + 1; i++)
    old.push(await sealItem(sealer, Buffer.from(`o${i}`)));
  const hb = await heartbeatRound(hub, phone);
  t.equal(
    hb.inbound[0]?.kind === 'heartbeat-ack' ? hb.inbound[0].caughtUp : 0,
    REMEMBERED_HANDSHAKES + 1,
    'caught up through the journal',
  );
  await t.rejects(phone.decryptItem(sink.bytes(old[0]!)), { code: 'ESTALE_EPOCH' }, 'stale epoch');
  // the newest (current epoch) item still opens after catch-up
  t.equal(
    (await phone.decryptItem(sink.bytes(old.at(-1)!))).plaintext.toString(),
    `o${REMEMBERED_HANDSHAKES}`,
  );
});

void t.test('tampered, truncated and foreign items', async (t) => {
  const { phone, sink, sealer, root, hub } = await world(t);
  const id = await sealItem(sealer, Buffer.alloc(3000, 7));
  const bytes = sink.bytes(id);
  // flip a byte in the header core's codec string: header authentication fails, phone state unchanged
  const flipped = Buffer.from(bytes);
  const at = flipped.indexOf(Buffer.from('video/mp4'));
  flipped[at] = (flipped[at] ?? 0) ^ 1;
  const before = phone.epoch('motion');
  await t.rejects(phone.decryptItem(flipped), { code: 'EHEADER_TAMPERED' });
  t.equal(phone.epoch('motion'), before, 'nothing merged from a tampered item');
  // truncated: no end record
  await t.rejects(phone.decryptItem(bytes.subarray(0, bytes.length - 30)), {
    code: 'EITEM_TRUNCATED',
  });
  // the intact item still opens (its key was stored by the previous attempt)
  t.equal((await phone.decryptItem(bytes)).plaintext.length, 3000);
  // a bit flip in a chunk
  const idx = bytes.length - 200;
  const chunkFlip = Buffer.from(bytes);
  chunkFlip[idx] = (chunkFlip[idx] ?? 0) ^ 0x80;
  await t.rejects(phone.decryptItem(chunkFlip), { code: 'ECHUNK_TAMPERED' });
  t.equal(bytes[5], RECORD_TYPE.header);
  // an item from another hub
  const other = await openHub(p, join(root, 'hub2'));
  const r2 = await pair({
    p,
    hub: other,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone2'),
  });
  t.ok(r2.phone);
  const s2 = new MemorySink();
  const foreign = await sealItem(sealerFor(other, s2), Buffer.from('not yours'));
  await t.rejects(phone.decryptItem(s2.bytes(foreign)), { code: 'ENOT_RECIPIENT' });
  t.ok(hub.phones.length === 1);
});

void t.test('desync is reported, never silent', async (t) => {
  const { hub, phone, root, sealer, sink } = await world(t);
  // snapshot the phone, advance, then restore the hub's view behind the phone by reopening an old copy
  const { cpSync } = await import('node:fs');
  cpSync(join(root, 'hub'), join(root, 'hub-old'), { recursive: true });
  const id = await sealItem(sealer, Buffer.from('z'));
  await phone.decryptItem(sink.bytes(id));
  const oldHub = await openHub(p, join(root, 'hub-old'));
  const out = await oldHub.handleConfig(await phone.heartbeat());
  t.match(
    out.desync,
    [{ group: 'motion', reason: /ahead of the hub/ }],
    'hub reports the phone ahead',
  );
  await t.rejects(phone.receive(out.replies[0]!), DesyncError);
  // a forked state (same epoch, different secrets) is detected by the epoch check
  const fork = await openHub(p, join(root, 'hub-old'));
  await sealItem(sealerFor(fork, new MemorySink()), Buffer.from('fork'));
  const hb = await fork.handleConfig(await phone.heartbeat());
  t.match(hb.desync, [{ group: 'motion', reason: /forked/ }]);
  t.ok(hub.phones.length === 1);
});

void t.test(
  'open(): unpaired dir gives undefined and wipes half-made groups; state file codec',
  async (t) => {
    const root = tempDir();
    t.teardown(() => {
      rmSync(root, { recursive: true, force: true });
    });
    mkdirSync(join(root, 'groups'), { recursive: true });
    writeFileSync(join(root, 'groups', 'motion.state'), 'half');
    t.equal(await E2eePhone.open({ dir: root, fs: new DurableFs(), profile: p }), undefined);
    const { existsSync } = await import('node:fs');
    t.notOk(existsSync(join(root, 'groups', 'motion.state')));
    const enc = encodePhoneState(7n, [Buffer.alloc(32, 1)], Buffer.from('state'));
    const dec = decodePhoneState(enc);
    t.equal(dec?.epoch, 7n);
    t.equal(Buffer.from(dec!.state).toString(), 'state');
    t.equal(decodePhoneState(Buffer.alloc(3)), undefined);
    writeFileSync(join(root, 'phone.json'), '{"version":2}');
    await t.rejects(E2eePhone.open({ dir: root, fs: new DurableFs(), profile: p }), {
      code: 'EMLS_STATE_CORRUPT',
    });
  },
);

void t.test('notices, app messages and refresh validation', async (t) => {
  const { hub, phone } = await world(t);
  const [n] = await hub.notify({ at: 1, kind: 'motion', text: 'motion at the door' });
  const got = await phone.receive(n!.bytes);
  t.equal(got.kind, 'notice');
  const app = await phone.receive(
    await hub.sealFor(phone.phoneId, {
      t: 'app',
      topic: 'ota-report',
      body: b64(Buffer.from('ok')),
    }),
  );
  t.ok(app.kind === 'app' && Buffer.from(app.body).toString() === 'ok');
  await t.rejects(phone.heartbeat({ refresh: ['config'] }), { code: 'EVALIDATION' });
  await t.rejects(phone.receive(Buffer.from('junk')), { code: 'EVALIDATION' });
});

void t.test(
  'a streaming reader hands out chunks and keeps none; end() checks the end',
  async (t) => {
    const { phone, sink, sealer } = await world(t);
    const plain = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff));
    const id = await sealItem(sealer, plain);
    const bytes = sink.bytes(id);
    const r = phone.openItem({ keepPlaintext: false });
    const got: Buffer[] = [];
    // fed in uneven pieces, as they arrive from the relay
    for (let off = 0; off < bytes.length; off += 700)
      for (const e of await r.push(bytes.subarray(off, off + 700)))
        if (e.type === 'chunk') got.push(Buffer.from(e.plaintext));
    t.ok(Buffer.concat(got).equals(plain), 'the chunks, in order, are the item');
    t.ok(got.length >= 5, `in chunks (${got.length})`);
    const end = r.end();
    t.equal(end.itemId, id);
    t.equal(end.trailer.status, 'complete');
    t.equal(end.trailer.totalBytes, plain.length);
    t.throws(() => r.finish(), { code: 'ESTREAMING' }, 'nothing was kept to assemble');
    // a truncated stream fails at end()
    const cut = phone.openItem({ keepPlaintext: false });
    await cut.push(bytes.subarray(0, bytes.length - 30));
    t.throws(() => cut.end(), { code: 'EITEM_TRUNCATED' });
    // the default reader still returns the item whole
    const whole = phone.openItem();
    await whole.push(bytes);
    t.ok(whole.finish().plaintext.equals(plain));
  },
);

void t.test(
  "a new item's key file is not read first; a key its failed state write left is written again, unchanged",
  async (t) => {
    class CountingFs extends DurableFs {
      readonly reads: string[] = [];
      failNextState = false;
      override async readIfExists(path: string): Promise<Buffer | undefined> {
        this.reads.push(path);
        return super.readIfExists(path);
      }
      override async writeFileAtomic(
        path: string,
        data: Parameters<DurableFs['writeFileAtomic']>[1],
        label?: string,
      ): Promise<void> {
        if (this.failNextState && label?.startsWith('phone-group-') === true) {
          this.failNextState = false;
          throw Object.assign(new Error('EIO (test)'), { code: 'EIO' });
        }
        return super.writeFileAtomic(path, data, label);
      }
    }
    const root = tempDir();
    t.teardown(() => {
      rmSync(root, { recursive: true, force: true });
    });
    const fs = new CountingFs();
    const hub = await openHub(p, join(root, 'hub'));
    const phone = (
      await pair({
        p,
        hub,
        devicePsk: newDevicePsk(),
        phoneDir: join(root, 'phone'),
        phoneFs: fs,
      })
    ).phone!;
    const sink = new MemorySink();
    const sealer = sealerFor(hub, sink, 1024);
    const keyFile = (id: string): string => join(root, 'phone', 'keys', `${id}.key`);

    const x = await sealItem(sealer, Buffer.from('x'));
    fs.reads.length = 0;
    t.equal((await phone.decryptItem(sink.bytes(x))).plaintext.toString(), 'x');
    t.notOk(fs.reads.includes(keyFile(x)), 'a new item: its key file is not read');
    // opened again (its epoch is the group's now): the stored key answers
    t.equal((await phone.decryptItem(sink.bytes(x))).plaintext.toString(), 'x');
    t.ok(fs.reads.includes(keyFile(x)), 'an accepted item: its key file is read');

    // the key is durable, the state write fails: the group stays at the earlier epoch
    const y = await sealItem(sealer, Buffer.from('y'));
    const before = phone.epoch('motion');
    fs.failNextState = true;
    await t.rejects(phone.decryptItem(sink.bytes(y)), { code: 'EIO' });
    t.equal(phone.epoch('motion'), before, 'not merged');
    const { readFileSync } = await import('node:fs');
    const left = JSON.parse(readFileSync(keyFile(y), 'utf8')) as { cek: string };
    // the same item again: the commit is processed from the same state, the same key results
    t.equal((await phone.decryptItem(sink.bytes(y))).plaintext.toString(), 'y');
    t.equal(phone.epoch('motion'), before + 1n, 'merged');
    const again = JSON.parse(readFileSync(keyFile(y), 'utf8')) as { cek: string };
    t.equal(again.cek, left.cek, 'the key file holds the same content key');
    // and after a restart the state is the later one
    const reopened = await E2eePhone.open({
      dir: join(root, 'phone'),
      fs: new DurableFs(),
      profile: p,
    });
    t.equal(reopened?.epoch('motion'), before + 1n);
  },
);
