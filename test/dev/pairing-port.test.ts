// The local run's interoperability target (`vigil dev --pairing-port`): the
// production pairing frame server in front of the run's real hub. A client
// written only from the docs gets the documented first reply; the project's
// phone code pairs over TCP, meets the hub at the relay with its pairing token
// and then opens a clip sealed to it.
import { generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { openItem } from '../../app/crypto.js';
import { E2eeCrypto } from '../../app/e2ee-crypto.js';
import { PairingInitiator } from '../../app/e2ee/pairing-initiator.js';
import { PairingClient } from '../../app/pair/client.js';
import { ItemStore } from '../../app/store.js';
import type { StoredItem } from '../../app/store.js';
import { Syncer } from '../../app/sync.js';
import { MemoryLogger } from '../../base/logger.js';
import { startLocalRun } from '../../dev/local-run.js';
import { DurableFs } from '../../hw/os/fs.js';
import { deriveIdentity } from '../../protocol/identity.js';
import { LazyMlsProfile } from '../../protocol/mls-profile.js';
import { parseQrPayload } from '../../protocol/qr-payload.js';
import { RelayClient } from '../../protocol/relay-client.js';

// Under a loaded CI machine the simulated camera and x264 run slowly: be patient.
t.setTimeout(600_000);

// ---- a client written from docs/pairing.md and docs/protocol.md only ----------------

/** RFC 4648 base32 (docs/pairing.md: the label's secret is 52 base32 characters). */
function base32Decode(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const ch of text) {
    value = (value << 5) | alphabet.indexOf(ch);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** docs/pairing.md "Device identity": HKDF-SHA256, salt "vigil/pairing/v1", info "<purpose>|<id>". */
function derive(secret: Buffer, purpose: string, deviceId: string, length: number): Buffer {
  return Buffer.from(
    hkdfSync('sha256', secret, 'vigil/pairing/v1', `${purpose}|${deviceId}`, length),
  );
}

/** docs/pairing.md "Pairing transport": u32 BE length (2 + payload), u8 version 1, u8 kind. */
function frame(kind: number, json: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(json), 'utf8');
  const head = Buffer.alloc(6);
  head.writeUInt32BE(2 + payload.length, 0);
  head[4] = 1;
  head[5] = kind;
  return Buffer.concat([head, payload]);
}

/** Send one frame, read the first whole frame back; resolves once the hub has closed too. */
async function exchange(
  host: string,
  port: number,
  out: Buffer,
): Promise<{ kind: number; json: Record<string, unknown> }> {
  const s: Socket = connect({ host, port });
  const closed = new Promise<void>((resolve) => {
    s.once('close', () => {
      resolve();
    });
  });
  let buf = Buffer.alloc(0);
  const reply = await new Promise<{ kind: number; json: Record<string, unknown> }>(
    (resolve, reject) => {
      s.once('connect', () => s.write(out));
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 4 || buf.length < 4 + buf.readUInt32BE(0)) return;
        const len = buf.readUInt32BE(0);
        if (buf[4] !== 1) reject(new Error(`transport version ${String(buf[4])}`));
        resolve({
          kind: buf[5] ?? 0,
          json: JSON.parse(buf.subarray(6, 4 + len).toString('utf8')) as Record<string, unknown>,
        });
      });
      s.once('error', reject);
      s.once('close', () => {
        reject(new Error('closed before a whole frame arrived'));
      });
    },
  );
  // the hub counts the attempt and frees its one slot when our side is gone
  s.end();
  await closed;
  return reply;
}

function hello(pskId: Buffer): Record<string, unknown> {
  const { publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return {
    t: 'hello',
    versions: [1],
    phoneTime: Date.now(),
    phoneId: randomBytes(16).toString('hex'),
    signaturePublicKey: jwk.x, // base64url of the raw 32-byte Ed25519 key
    pskId: pskId.toString('base64url'),
  };
}

t.test('vigil dev --pairing-port: a real hub behind the production frame server', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-pairing-port-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const logger = new MemoryLogger('dev');
  const lr = await startLocalRun({
    dir,
    logger,
    viewerPort: 0,
    pairingPort: 0,
    width: 320,
    height: 240,
    fps: 10,
    motion: { intervals: [[2, 6]], periodS: 20 },
    preRollS: 1,
    postRollS: 1,
  });
  t.teardown(() => lr.stop());
  const pairing = lr.pairing;
  if (!pairing) throw new Error('the run serves no pairing port');
  t.equal(pairing.host, '127.0.0.1', 'loopback only');
  t.ok(pairing.port > 0, `listening on ${String(pairing.port)}`);
  const label = (await readFile(pairing.labelFile, 'utf8')).trim();
  const m = /^VIGIL1:([A-Z2-7]{16}):([A-Z2-7]{52}):[A-Z2-7]{4}$/.exec(label);
  if (!m) throw new Error(`the label file does not hold a documented payload: ${label.length}`);
  const [, deviceId = '', secretText = ''] = m;
  const secret = base32Decode(secretText).subarray(0, 32);

  await t.test('a client written from the docs gets the documented first reply', async (t) => {
    const pskId = derive(secret, 'mls-external-psk-id', deviceId, 16);
    const r = await exchange(pairing.host, pairing.port, frame(1, hello(pskId)));
    t.equal(r.kind, 1, 'a pairing frame (kind 1) answers the hello');
    t.equal(r.json.t, 'hello-ack');
    t.equal(r.json.version, 1, 'the highest common version');
    t.equal(r.json.deviceId, deviceId, "the label's device id");
    t.same(r.json.groups, ['motion', 'thumbnail', 'livestream', 'config', 'notification']);
    t.equal(typeof r.json.hubTime, 'number', 'hubTime in ms');
    const key = Buffer.from(String(r.json.signaturePublicKey), 'base64url');
    t.equal(key.length, 32, "the hub's Ed25519 signature key");

    const wrong = await exchange(pairing.host, pairing.port, frame(1, hello(randomBytes(16))));
    t.equal(wrong.kind, 1);
    t.same(
      { t: wrong.json.t, code: wrong.json.code },
      { t: 'error', code: 'EPSK_UNKNOWN' },
      'a PSK id the hub does not know: the documented error frame',
    );
    const junk = await exchange(pairing.host, pairing.port, frame(9, {}));
    t.same(
      { kind: junk.kind, t: junk.json.t, code: junk.json.code },
      { kind: 3, t: 'error', code: 'EFRAME_KIND' },
      'an unknown frame kind: a status error frame',
    );
  });

  await t.test('the project phone pairs over TCP and then receives a clip', async (t) => {
    const parsed = parseQrPayload(label);
    if (!parsed.ok) throw new Error(parsed.reason);
    t.equal(parsed.value.deviceId, deviceId);
    t.same(Buffer.from(parsed.value.secret), secret, 'the docs-only label decoding agrees');
    const d = deriveIdentity(parsed.value.secret, deviceId);
    const fs = new DurableFs();
    const phoneDir = join(dir, 'phone-2');
    const client = await PairingClient.connect(pairing.host, pairing.port);
    let token: string;
    let phone;
    try {
      phone = await client.pair(
        new PairingInitiator({
          dir: join(phoneDir, 'e2ee'),
          fs,
          profile: new LazyMlsProfile(),
          psk: { id: d.mlsPskId, secret: d.mlsPsk },
        }),
      );
      t.not(phone.phoneId, lr.phone.phoneId, 'a second phone');
      // a relay override is accepted by the protocol, but the run keeps its own relay
      token = await client.sendCredentials(phone, 'home-net', 'correct horse battery', undefined, {
        url: 'https://relay.example.org',
      });
    } finally {
      client.close();
    }
    t.ok(
      logger.lines.some((l) => l.includes('the relay override is ignored')),
      'the ignored relay override is logged',
    );
    // the hub offered the rendezvous before it answered: claim it at once
    const account = await new RelayClient({ url: lr.relayUrl }).claimRendezvous(token);
    t.same(
      { principal: account.principal, deviceId: account.deviceId },
      { principal: 'phone', deviceId },
      'a phone account at the relay, for this hub',
    );
    const crypto = new E2eeCrypto(phone);
    const store = new ItemStore(join(phoneDir, 'items'), fs);
    const syncer = new Syncer({
      client: new RelayClient({ url: lr.relayUrl, token: account.token }),
      crypto,
      store,
      logger: logger.child('phone-2'),
    });
    // the phone's own follow loop (relay long-poll): wait for the event, not for time
    const following = new AbortController();
    const clip = await new Promise<StoredItem>((resolve) => {
      void syncer.run(following.signal, (items) => {
        const c = items.find((it) => it.summary.kind === 'clip');
        if (c) resolve(c);
      });
    });
    following.abort();
    const stored = await store.get(clip.seq);
    const opened = await openItem(crypto, stored?.bytes ?? Buffer.alloc(0));
    t.equal(opened.summary.kind, 'clip', 'the second phone opened a clip');
    t.equal(
      Buffer.from(opened.plaintext.subarray(4, 8)).toString('latin1'),
      'ftyp',
      'and it is an MP4',
    );
  });
});
