import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  MAX_FRAME_BYTES,
  b64,
  decodeConfigMessage,
  decodeFrame,
  encodeConfigMessage,
  encodeFrame,
  errorFrame,
  unb64,
  type ConfigMessage,
  type PairingFrame,
} from '../../protocol/e2ee-frames.js';

const frames: PairingFrame[] = [
  {
    t: 'hello',
    versions: [1],
    phoneTime: 1_790_000_000_000,
    phoneId: 'a1b2c3d4e5f60718',
    signaturePublicKey: b64(Buffer.alloc(32, 1)),
    pskId: b64(Buffer.alloc(16, 2)),
  },
  {
    t: 'hello-ack',
    version: 1,
    hubTime: 5,
    deviceId: 'dev-1',
    signaturePublicKey: b64(Buffer.alloc(32)),
    groups: ['motion', 'config'],
  },
  { t: 'key-package', group: 'motion', keyPackage: b64(Buffer.alloc(3000, 3)) },
  {
    t: 'welcome',
    group: 'notification',
    groupId: b64(Buffer.alloc(16)),
    welcome: b64(Buffer.alloc(9000, 4)),
  },
  { t: 'confirm', mac: b64(Buffer.alloc(32, 5)) },
  { t: 'paired', phoneId: 'a1b2c3d4e5f60718', admin: true },
  errorFrame('EPSK_MISMATCH', 'x'.repeat(900)),
];

void t.test('every pairing frame round-trips', async (t) => {
  for (const f of frames) {
    const d = decodeFrame(encodeFrame(f));
    t.ok(d.ok, f.t);
    if (d.ok) t.same(d.value, f.t === 'error' ? { ...f, message: f.message.slice(0, 500) } : f);
  }
  t.same(unb64(b64(Buffer.from([1, 2, 255]))), Uint8Array.from([1, 2, 255]));
});

void t.test('bad bytes give results, never exceptions', async (t) => {
  const cases: [Uint8Array, RegExp][] = [
    [Buffer.from([0xff, 0xfe]), /not UTF-8 JSON/],
    [Buffer.from('[]'), /invalid pairing frame/],
    [Buffer.from('{"t":"hello"}'), /invalid pairing frame: versions/],
    [Buffer.from('{"t":"nope"}'), /invalid pairing frame/],
    [Buffer.from(JSON.stringify({ ...frames[4], extra: 1 })), /invalid pairing frame/],
    [Buffer.from(JSON.stringify({ t: 'confirm', mac: 'not base64!' })), /base64url/],
    [Buffer.alloc(MAX_FRAME_BYTES + 1, 0x20), /exceeds/],
  ];
  for (const [bytes, re] of cases) {
    const d = decodeFrame(bytes);
    t.notOk(d.ok);
    if (!d.ok) {
      t.match(d.reason, re);
      t.equal(d.code, 'EVALIDATION');
    }
  }
  t.throws(() => encodeFrame({ t: 'paired', phoneId: 'XYZ', admin: true }));
});

void t.test('config messages round-trip and validate', async (t) => {
  const msgs: ConfigMessage[] = [
    {
      t: 'heartbeat',
      seq: 1,
      sentAt: 2,
      epochs: { motion: '12' },
      checks: { motion: b64(Buffer.alloc(16)) },
      acks: ['0123456789abcdef0123456789abcdef'],
      refresh: [],
    },
    {
      t: 'heartbeat-ack',
      seq: 1,
      hubTime: 3,
      epochs: { motion: '12' },
      catchUp: [{ group: 'motion', epoch: '12', handshake: b64(Buffer.alloc(10)) }],
      acknowledged: [],
      desync: [{ group: 'config', phoneEpoch: '1', hubEpoch: '2', reason: 'x' }],
    },
    { t: 'invite-request', requestId: 'deadbeefdeadbeef' },
    {
      t: 'invite',
      requestId: 'deadbeefdeadbeef',
      deviceId: 'd',
      pskId: b64(Buffer.alloc(29)),
      psk: b64(Buffer.alloc(32)),
      expiresAt: 9,
    },
    { t: 'remove-request', requestId: 'deadbeefdeadbeef', phoneId: 'a1b2c3d4e5f60718' },
    { t: 'removed', requestId: 'deadbeefdeadbeef', phoneId: 'a1b2c3d4e5f60718' },
    { t: 'request-failed', requestId: 'deadbeefdeadbeef', code: 'ENOT_ADMIN', message: 'no' },
    { t: 'app', topic: 'wifi-credentials', body: b64(Buffer.from('{}')) },
    {
      t: 'notice',
      at: 1,
      kind: 'motion',
      itemId: '0123456789abcdef0123456789abcdef',
      text: 'door',
    },
  ];
  for (const m of msgs) {
    const d = decodeConfigMessage(encodeConfigMessage(m));
    t.ok(d.ok, m.t);
    if (d.ok) t.same(d.value, m);
  }
  t.notOk(decodeConfigMessage(Buffer.from('{"t":"heartbeat","seq":-1}')).ok);
  t.notOk(decodeConfigMessage(Buffer.from('{"t":"app","topic":"Bad Topic","body":""}')).ok);
  t.notOk(
    decodeConfigMessage(Buffer.from(JSON.stringify({ ...msgs[0], epochs: { motion: '-3' } }))).ok,
  );
});

// ---- frozen byte vectors (test/vectors/*.json) -------------------------------------------
// Generated once from this implementation and checked by hand against docs/protocol.md
// sections 2 and 3. A format change must fail here; never regenerate the files to pass.

interface FrozenVector {
  frame?: PairingFrame;
  message?: ConfigMessage;
  bytes: { json: string };
}
function loadVector(name: string): FrozenVector {
  return JSON.parse(
    readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8'),
  ) as FrozenVector;
}

void t.test('vector: a hello pairing frame, both directions', async (t) => {
  const v = loadVector('pairing-frame.json');
  const json = v.bytes.json;
  if (v.frame === undefined) throw new Error('pairing-frame.json has no frame');
  t.equal(Buffer.from(encodeFrame(v.frame)).toString('hex'), json, 'encode -> frozen bytes');
  const d = decodeFrame(Buffer.from(json, 'hex'));
  t.same(d.ok ? d.value : d, v.frame, 'frozen bytes -> the known frame');
  t.equal(
    Buffer.from(json, 'hex').toString('utf8'),
    '{"t":"hello","versions":[1],"phoneTime":1790000000456,' +
      '"phoneId":"0123456789abcdef0123456789abcdef",' +
      '"signaturePublicKey":"oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8",' +
      '"pskId":"wMHCw8TFxsfIycrLzM3Ozw"}',
    'one UTF-8 JSON object, binary members in unpadded base64url',
  );
});

void t.test('vector: a heartbeat config message, both directions', async (t) => {
  const v = loadVector('config-message.json');
  const json = v.bytes.json;
  if (v.message === undefined) throw new Error('config-message.json has no message');
  t.equal(
    Buffer.from(encodeConfigMessage(v.message)).toString('hex'),
    json,
    'encode -> frozen bytes',
  );
  const d = decodeConfigMessage(Buffer.from(json, 'hex'));
  t.same(d.ok ? d.value : d, v.message, 'frozen bytes -> the known message');
  t.equal(
    Buffer.from(json, 'hex').toString('utf8'),
    '{"t":"heartbeat","seq":42,"sentAt":1790000000789,"epochs":{"motion":"7","config":"3"},' +
      '"checks":{"motion":"0NHS09TV1tfY2drb3N3e3w"},' +
      '"acks":["000102030405060708090a0b0c0d0e0f"],' +
      '"refresh":[{"group":"thumbnail","keyPackage":"4OHi4-Tl5ufo6err"}]}',
    'epochs as decimal strings, checks as base64url',
  );
});

void t.test('heartbeat-ack: the optional dropped report (protocol 1.1)', async (t) => {
  const base = {
    t: 'heartbeat-ack',
    seq: 4,
    hubTime: 5,
    epochs: {},
    catchUp: [],
    acknowledged: [],
    desync: [],
  };
  const old = decodeConfigMessage(Buffer.from(JSON.stringify(base)));
  t.ok(old.ok, 'an ack without it (an older hub) still decodes');
  if (old.ok && old.value.t === 'heartbeat-ack') t.equal(old.value.dropped, undefined);
  const withDrops: ConfigMessage = {
    ...base,
    t: 'heartbeat-ack',
    dropped: { items: 3, reason: 'relay-outage' },
  };
  const d = decodeConfigMessage(encodeConfigMessage(withDrops));
  t.ok(d.ok);
  if (d.ok) t.same(d.value, withDrops);
  for (const bad of [
    { items: 0, reason: 'relay-outage' },
    { items: 1.5, reason: 'relay-outage' },
    { items: 2, reason: 'bored' },
    { items: 2, reason: 'relay-outage', extra: 1 },
  ])
    t.notOk(
      decodeConfigMessage(Buffer.from(JSON.stringify({ ...base, dropped: bad }))).ok,
      `refused: ${JSON.stringify(bad)}`,
    );
});
