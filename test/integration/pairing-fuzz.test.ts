/**
 * Fuzz the pairing server in-process: >= 100,000 random and mutated inputs
 * through the real transport core (PairingConnection) and the real session
 * (HubPairingSession + PairingResponder + MlsHub). Every input must end its
 * connection as a failed attempt with a specific error code; nothing throws,
 * nothing hangs, memory stays bounded.
 */
import t from 'tap';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import { PairingResponder } from '../../firmware/mls/pairing-responder.js';
import { PairingInitiator } from '../../app/e2ee/pairing-initiator.js';
import { decodeFrame, encodeFrame } from '../../protocol/e2ee-frames.js';
import {
  encodeWireFrame,
  FRAME_KIND,
  TRANSPORT_VERSION,
} from '../../protocol/pairing-transport.js';
import { PairingConnection } from '../../firmware/pairing/server.js';
import { HubPairingSession } from '../../firmware/pairing/session.js';
import { newDeviceHub } from '../../dev/fixtures/paired-hub.js';

// Stack traces are not what is under test here; capturing one per rejected frame dominates the run.
Error.stackTraceLimit = 0;

const CASES = Number(process.env.VIGIL_FUZZ_CASES ?? 100_000);

/** Small deterministic PRNG (xorshift32) so a failure can be replayed by seed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    int: (n: number) => next() % n,
    bytes: (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
  };
}

const SPECIFIC = new Set([
  // transport
  'EFRAME_TOO_LARGE',
  'EFRAME_EMPTY',
  'EFRAME_VERSION',
  'EFRAME_KIND',
  'EFRAME_TRUNCATED',
  'EFRAME_PAYLOAD',
  'EFRAME_UNEXPECTED',
  'EFRAME_TOO_MANY',
  'ECONN_CLOSED',
  // handshake content (PairingResponder)
  'EVERSION',
  'EPSK_UNKNOWN',
  'EPSK_MISMATCH',
  'EUNEXPECTED_FRAME',
  'EKEY_PACKAGE_INVALID',
  'EKEY_PACKAGE_LIFETIME',
  'EFOREIGN_KEY_PACKAGE',
  'EPEER_ABORTED',
  // config group (MlsHub.handleConfig)
  'EVALIDATION',
  'EUNKNOWN_GROUP',
  'EMLS_REJECTED',
]);

void t.test(
  `${CASES} random and mutated frames: each rejected with a specific error`,
  async (t) => {
    const { profile: p, devicePsk, hub } = await newDeviceHub('vigil-fuzz-');

    // a corpus of valid frames from a real initiator
    const ini = new PairingInitiator({
      dir: await mkdtemp(join(tmpdir(), 'vigil-fuzz-phone-')),
      fs: new DurableFs(),
      profile: p,
      psk: devicePsk,
    });
    const hello = encodeFrame(await ini.start());
    const warm = new PairingResponder({ hub, devicePsk });
    const ack = (await warm.handle((decodeFrame(hello) as { ok: true; value: never }).value))[0]!;
    const kp = encodeFrame((await ini.handle(ack))[0]!);
    warm.abort();
    const corpus: Buffer[] = [
      encodeWireFrame({ kind: 'pairing', payload: hello }),
      encodeWireFrame({ kind: 'pairing', payload: kp }),
      encodeWireFrame({ kind: 'config', payload: Buffer.from([0, 1, 0, 2, 0, 0, 0, 0]) }),
      encodeWireFrame({
        kind: 'status',
        payload: Buffer.from('{"t":"error","code":"X","message":""}'),
      }),
      encodeWireFrame({ kind: 'pairing', payload: Buffer.from('{"t":"confirm","mac":"AAAA"}') }),
    ];

    const r = rng(0x5eed);
    const mutate = (src: Buffer, only?: number): Buffer => {
      const b = Buffer.from(src);
      switch (only ?? r.int(8)) {
        case 0: // bit flips
          for (let k = 1 + r.int(4); k > 0; k--) {
            const i = r.int(b.length);
            b[i] = (b[i] ?? 0) ^ (1 << r.int(8));
          }
          return b;
        case 1: // truncate
          return b.subarray(0, r.int(b.length));
        case 2: // extend with junk
          return Buffer.concat([b, r.bytes(1 + r.int(64))]);
        case 3: // damage the length field
          b.writeUInt32BE(
            r.int(2) === 0 ? r.int(0xffffffff) : Math.max(0, b.length - 4 + r.int(9) - 4),
            0,
          );
          return b;
        case 4: // version / kind bytes
          b[4 + r.int(2)] = r.int(256);
          return b;
        case 5: {
          // replace a JSON value in the payload, keep the header consistent
          const text = b.subarray(6).toString('latin1');
          const m = [...text.matchAll(/:("[^"]*"|-?\d+|true|false|\[[^\]]*\])/g)];
          const pick = m[r.int(Math.max(1, m.length))];
          const repl = [
            '""',
            '0',
            '-1',
            '1e309',
            'null',
            '{}',
            '[]',
            `"${'A'.repeat(r.int(300))}"`,
            'true',
            '"\\u0000"',
          ][r.int(10)]!;
          const out = pick
            ? text.slice(0, pick.index + 1) + repl + text.slice(pick.index + pick[0].length)
            : text;
          const payload = Buffer.from(out, 'latin1');
          return encodeWireFrame({
            kind: (['pairing', 'config', 'status'] as const)[r.int(3)]!,
            payload: payload.subarray(0, 256 * 1024),
          });
        }
        case 6: // splice two corpus frames
          return Buffer.concat([
            b.subarray(0, r.int(b.length)),
            corpus[r.int(corpus.length)]!.subarray(r.int(20)),
          ]);
        default: // byte overwrite run
          for (let i = r.int(b.length), k = r.int(16); k > 0 && i < b.length; k--, i++)
            b[i] = r.int(256);
          return b;
      }
    };
    const randomFrame = (): Buffer => {
      const kind =
        r.int(10) === 0
          ? r.int(256)
          : [FRAME_KIND.pairing, FRAME_KIND.config, FRAME_KIND.status][r.int(3)]!;
      const payload =
        r.int(3) === 0
          ? Buffer.from(
              JSON.stringify({
                t: ['hello', 'key-package', 'confirm', 'welcome', 'x'][r.int(5)],
                v: r.int(9),
              }),
            )
          : r.bytes(r.int(128));
      const head = Buffer.alloc(6);
      head.writeUInt32BE(payload.length + 2, 0);
      head[4] = r.int(20) === 0 ? r.int(256) : TRANSPORT_VERSION;
      head[5] = kind;
      return Buffer.concat([head, payload]);
    };

    const codes = new Map<string, number>();
    const startHeap = process.memoryUsage().heapUsed;
    let maxHeapGrowth = 0;
    for (let i = 0; i < CASES; i++) {
      const which = r.int(10);
      const chunks: Buffer[] =
        which < 3
          ? [r.bytes(r.int(96))]
          : which < 5
            ? [randomFrame()]
            : which < 9
              ? [mutate(corpus[r.int(corpus.length)]!)]
              : // a valid hello, then a key package with a field replaced (bit-level damage to a
                // key package that still decodes would cost a full MLS group creation per case)
                [corpus[0]!, mutate(corpus[1]!, 5)];
      const session = new HubPairingSession({
        responder: new PairingResponder({ hub, devicePsk }),
        handleConfig: (b) => hub.handleConfig(b),
        networkInRange: async () => true,
      });
      const io = { closed: false };
      const conn = new PairingConnection(session, {
        send: () => undefined,
        close: () => (io.closed = true),
      });
      // deliver in random splits, as TCP would
      for (const c of chunks) {
        let off = 0;
        while (off < c.length) {
          const n = 1 + r.int(c.length - off);
          await conn.receive(c.subarray(off, off + n));
          off += n;
        }
      }
      conn.end();
      const res = conn.result;
      if (!res || res.succeeded || !io.closed) {
        t.fail(`case ${i}: not rejected (${JSON.stringify(res)})`);
        break;
      }
      codes.set(res.code, (codes.get(res.code) ?? 0) + 1);
      if (!SPECIFIC.has(res.code)) {
        t.fail(`case ${i}: unspecific error ${res.code}: ${res.message}`);
        break;
      }
      if (i % 10_000 === 0)
        maxHeapGrowth = Math.max(maxHeapGrowth, process.memoryUsage().heapUsed - startHeap);
    }
    t.comment(
      `codes: ${JSON.stringify(Object.fromEntries([...codes].sort((a, b) => b[1] - a[1])))}`,
    );
    t.equal(
      [...codes.values()].reduce((a, b) => a + b, 0),
      CASES,
      'every case rejected with a specific error',
    );
    t.ok(codes.size >= 8, 'the fuzzer reaches many different checks');
    t.ok(
      maxHeapGrowth < 256 * 1024 * 1024,
      `heap growth bounded (${Math.round(maxHeapGrowth / 1048576)} MiB)`,
    );
    t.equal(hub.phones.length, 0, 'no phone was ever paired by garbage');
  },
);
