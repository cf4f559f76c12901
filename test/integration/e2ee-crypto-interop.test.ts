/**
 * The node:crypto provider (protocol/native-crypto.ts) and ts-mls's default
 * JavaScript provider are interchangeable on the wire and on disk: a hub on
 * one pairs with a phone on the other, every item kind and the config and
 * notification groups work both ways, refresh by re-add (a fresh leaf after a
 * suspected compromise) works, and each side restarts on the OTHER provider
 * from the state the first one persisted.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import { E2eePhone } from '../../app/e2ee/phone.js';
import { loadMlsProfile, type MlsCrypto } from '../../protocol/mls-profile.js';
import type { ItemKind } from '../../protocol/items.js';
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

const KINDS: readonly ItemKind[] = ['clip', 'thumbnail', 'live'];
const other = (c: MlsCrypto): MlsCrypto => (c === 'native' ? 'js' : 'native');

for (const hubCrypto of ['native', 'js'] as const) {
  const phoneCrypto = other(hubCrypto);
  void t.test(`hub on ${hubCrypto} crypto, phone on ${phoneCrypto}`, async (t) => {
    const hp = await loadMlsProfile({ crypto: hubCrypto });
    const pp = await loadMlsProfile({ crypto: phoneCrypto });
    t.equal(hp.crypto, hubCrypto);
    t.equal(pp.crypto, phoneCrypto);
    const root = tempDir();
    t.teardown(() => {
      rmSync(root, { recursive: true, force: true });
    });

    // Pairing: the hub creates the five groups and adds the phone (PSK, Welcome, confirm MAC).
    const hub = await openHub(hp, join(root, 'hub'));
    const paired = await pair({
      p: pp,
      hub,
      devicePsk: newDevicePsk(),
      phoneDir: join(root, 'phone'),
    });
    t.equal(paired.responder.failure, undefined, 'the hub accepted the pairing');
    const phone = paired.phone;
    if (phone === undefined) {
      t.fail('pairing did not finish');
      return;
    }

    // Items of every kind, each in a new epoch.
    const sink = new MemorySink();
    const sealer = sealerFor(hub, sink, 4096);
    const payloads = new Map<string, Buffer>();
    for (let i = 0; i < 6; i++) {
      const kind = KINDS[i % KINDS.length]!;
      const payload = randomBytes(3000 + i * 1500);
      const id = await sealItem(sealer, payload, kind, 3);
      payloads.set(id, payload);
      const opened = await phone.decryptItem(sink.bytes(id));
      t.ok(opened.plaintext.equals(payload), `${kind} item ${i} opens`);
      await phone.acknowledge(id);
    }
    t.equal(phone.epoch('motion'), hub.epoch(phone.phoneId, 'motion'), 'motion epochs agree');

    // Config group both ways (an app message down, heartbeats up) and the notification group.
    const fromHub = await phone.receive(
      await hub.sealFor(phone.phoneId, { t: 'app', topic: 'probe', body: 'aGVsbG8' }),
    );
    t.same(
      fromHub.kind === 'app' ? Buffer.from(fromHub.body).toString() : fromHub.kind,
      'hello',
      'hub -> phone app message',
    );
    const notices = await hub.notify({ at: 1_790_000_000_000, kind: 'motion', text: 'front door' });
    const notice = await phone.receive(notices[0]!.bytes);
    t.equal(notice.kind === 'notice' ? notice.notice.text : notice.kind, 'front door');
    const hb = await heartbeatRound(hub, phone);
    t.same(hb.out.desync, [], 'heartbeat: epoch checks agree');
    t.ok(hb.out.acknowledged.length > 0, 'acks reach the hub');

    // Refresh by re-add: the phone offers fresh key packages, the next items carry Welcomes.
    await heartbeatRound(hub, phone, { refresh: ['motion', 'thumbnail'] });
    t.same(hub.pendingRefreshes.sort(), [`${phone.phoneId}/motion`, `${phone.phoneId}/thumbnail`]);
    for (const kind of ['clip', 'thumbnail', 'clip'] as const) {
      const id = await sealItem(sealer, Buffer.from(`after refresh ${kind}`), kind);
      t.equal(
        (await phone.decryptItem(sink.bytes(id))).plaintext.toString(),
        `after refresh ${kind}`,
      );
    }
    t.same(hub.pendingRefreshes, [], 'both refreshes committed');
    t.same((await heartbeatRound(hub, phone)).out.desync, [], 'no desync after re-add');

    // Restart each side on the other provider, from the state this run persisted.
    const hub2 = await openHub(pp, join(root, 'hub'));
    const phone2 = await E2eePhone.open({
      dir: join(root, 'phone'),
      fs: new DurableFs(),
      profile: hp,
    });
    if (phone2 === undefined) {
      t.fail('phone state did not reopen');
      return;
    }
    const [firstId, firstPayload] = [...payloads][0]!;
    t.ok(
      (await phone2.decryptStored(sink.bytes(firstId))).plaintext.equals(firstPayload),
      'a stored item re-opens on the other provider',
    );
    const s2 = sealerFor(hub2, sink);
    const last = await sealItem(s2, Buffer.from('after both restarts'));
    t.equal(
      (await phone2.decryptItem(sink.bytes(last))).plaintext.toString(),
      'after both restarts',
      'the restarted hub (other provider, same signing key) seals for the restarted phone',
    );
    t.same((await heartbeatRound(hub2, phone2)).out.desync, []);
  });
}
