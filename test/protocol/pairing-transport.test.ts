import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  FrameDecoder,
  MAX_PAYLOAD,
  decodeStatus,
  decodeWifiCredentials,
  encodeStatus,
  encodeWifiCredentials,
  encodeWireFrame,
} from '../../protocol/pairing-transport.js';

void t.test('round trip in arbitrary splits', async (t) => {
  const frames = [
    { kind: 'pairing' as const, payload: Buffer.from('{"t":"hello"}') },
    { kind: 'config' as const, payload: Buffer.alloc(1000, 7) },
    { kind: 'status' as const, payload: Buffer.alloc(0) },
  ];
  const wire = Buffer.concat(frames.map(encodeWireFrame));
  for (const step of [1, 2, 3, 5, 7, 100, wire.length]) {
    const d = new FrameDecoder();
    const got: { kind: string; payload: Uint8Array }[] = [];
    for (let i = 0; i < wire.length; i += step) {
      const r = d.push(wire.subarray(i, i + step));
      t.notOk(r.error);
      got.push(...r.frames);
    }
    t.same(
      got.map((f) => [f.kind, Buffer.from(f.payload).toString('hex')]),
      frames.map((f) => [f.kind, f.payload.toString('hex')]),
      `split ${step}`,
    );
    t.equal(d.end(), undefined);
  }
});

void t.test('each malformation has its own code; the decoder stays failed', async (t) => {
  const head = (len: number, v = 1, k = 1) => {
    const b = Buffer.alloc(6);
    b.writeUInt32BE(len, 0);
    b[4] = v;
    b[5] = k;
    return b;
  };
  const cases: [Buffer, string][] = [
    [head(MAX_PAYLOAD + 3), 'EFRAME_TOO_LARGE'],
    [head(1), 'EFRAME_EMPTY'],
    [head(5, 2), 'EFRAME_VERSION'],
    [head(5, 1, 9), 'EFRAME_KIND'],
  ];
  for (const [bytes, code] of cases) {
    const d = new FrameDecoder();
    t.equal(d.push(bytes).error?.code, code);
    t.equal(
      d.push(encodeWireFrame({ kind: 'pairing', payload: Buffer.from('x') })).error?.code,
      code,
      'stays failed',
    );
    t.equal(d.buffered, 0, 'nothing kept');
  }
  const d = new FrameDecoder();
  d.push(head(10).subarray(0, 5));
  t.equal(d.end()?.code, 'EFRAME_TRUNCATED');
  t.throws(() => encodeWireFrame({ kind: 'config', payload: Buffer.alloc(MAX_PAYLOAD + 1) }), {
    code: 'EFRAME_TOO_LARGE',
  });
});

void t.test('status frames and Wi-Fi credentials are zod-validated', async (t) => {
  const s = encodeStatus({ t: 'handoff', state: 'leaving-hotspot', message: 'bye' });
  t.same(decodeStatus(s.subarray(6)), {
    ok: true,
    value: { t: 'handoff', state: 'leaving-hotspot', message: 'bye' },
  });
  t.match(decodeStatus(Buffer.from('{"t":"handoff","state":"x","message":""}')), {
    ok: false,
    code: 'EFRAME_PAYLOAD',
  });
  t.match(decodeStatus(Buffer.from([0xff])), { ok: false, code: 'EFRAME_PAYLOAD' });
  const c = { ssid: 'home', passphrase: 'password1', pairingToken: 'a'.repeat(32) };
  t.same(decodeWifiCredentials(encodeWifiCredentials(c)), { ok: true, value: c });
  const bad = (o: unknown) => decodeWifiCredentials(Buffer.from(JSON.stringify(o)));
  t.match(bad({ ...c, passphrase: 'short' }), { ok: false, reason: /at least 8/ });
  t.match(bad({ ...c, ssid: 'a\nb' }), { ok: false, reason: /control characters/ });
  t.match(bad({ ...c, pairingToken: 'zz' }), { ok: false, reason: /pairing token/ });
  t.match(bad({ ...c, extra: 1 }), { ok: false });
  t.match(decodeWifiCredentials(Buffer.from('{')), {
    ok: false,
    code: 'EFRAME_PAYLOAD',
  });
});

void t.test('Wi-Fi credentials: the optional relay a phone chooses', async (t) => {
  const c = { ssid: 'home', passphrase: 'password1', pairingToken: 'a'.repeat(32) };
  const bad = (o: unknown) => decodeWifiCredentials(Buffer.from(JSON.stringify(o)));
  t.same(bad(c), { ok: true, value: c }, 'an older phone omits it');
  t.same(bad({ ...c, relayUrl: 'https://my-relay.example/', relayEnrollToken: 'tok-1' }), {
    ok: true,
    value: { ...c, relayUrl: 'https://my-relay.example', relayEnrollToken: 'tok-1' },
  });
  t.same(bad({ ...c, relayUrl: 'http://127.0.0.1:8080' }), {
    ok: true,
    value: { ...c, relayUrl: 'http://127.0.0.1:8080' },
  });
  for (const [url, why] of [
    ['http://relay.example', /^relayUrl must be https \(http only to a loopback or link-local/],
    ['ftp://relay.example', /^relayUrl must be https, not ftp$/],
    ['file:///etc/passwd', /^relayUrl must be https, not file$/],
    ['not a url', /^relayUrl is not a URL$/],
  ] as const)
    t.match(bad({ ...c, relayUrl: url }), { ok: false, code: 'EFRAME_PAYLOAD', reason: why }, url);
  t.match(bad({ ...c, relayEnrollToken: 'tok' }), {
    ok: false,
    reason: /^relayEnrollToken an enrollment token needs a relay URL$/,
  });
  t.throws(() => encodeWifiCredentials({ ...c, relayUrl: 'http://relay.example' }));
});

void t.test('vector: the hello frame inside a transport frame, both directions', async (t) => {
  // test/vectors/pairing-frame.json, frozen; docs/pairing.md gives the layout.
  const v = JSON.parse(
    readFileSync(new URL('../vectors/pairing-frame.json', import.meta.url), 'utf8'),
  ) as { bytes: { json: string; wire: string } };
  const payload = Buffer.from(v.bytes.json, 'hex');
  const wire = Buffer.from(v.bytes.wire, 'hex');
  t.equal(encodeWireFrame({ kind: 'pairing', payload }).toString('hex'), v.bytes.wire);
  t.equal(wire.readUInt32BE(0), 2 + payload.length, 'u32 BE length of what follows');
  t.same([wire[4], wire[5]], [1, 1], 'transport version 1, kind 1 (pairing)');
  const r = new FrameDecoder().push(wire);
  t.equal(r.error, undefined);
  t.same(
    r.frames.map((f) => [f.kind, Buffer.from(f.payload).toString('hex')]),
    [['pairing', v.bytes.json]],
  );
});
