import t from 'tap';
import { JsonLogger, MemoryLogger, SecretRegistry, SILENT } from '../../base/logger.js';

const KEY = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
const PSK = 'psk-7f3a9c2e1b4d6f8a0c2e4a6b8d0f1e3c';
const WIFI = 'correct horse battery staple';

t.test('a key, a PSK and a Wi-Fi password never reach the output', async (t) => {
  const secrets = new SecretRegistry();
  secrets.add(KEY);
  secrets.add(PSK);
  secrets.add(WIFI);
  const log = new MemoryLogger('test', secrets);
  const child = log.child('wifi');
  // Leaks through every channel a careless caller might use:
  log.info(`joining with ${WIFI}`);
  child.warn('handshake', {
    psk: PSK,
    note: `psk was ${PSK}`,
    nested: { deep: [KEY.toString('hex')] },
  });
  child.error('failed', { error: new Error(`bad key ${KEY.toString('base64')}`), material: KEY });
  log.info('object', {
    wifi: { ssid: 'Home', password: WIFI },
    token: 'abc',
    keyPackage: 'public-ok',
  });
  const out = log.lines.join('\n');
  t.equal(log.lines.length, 4);
  for (const secret of [
    PSK,
    WIFI,
    KEY.toString('hex'),
    KEY.toString('base64'),
    KEY.toString('base64url'),
  ]) {
    t.notOk(out.includes(secret), 'secret absent');
  }
  t.match(out, /\[redacted\]/);
  t.match(out, /"keyPackage":"public-ok"/, 'public fields stay readable');
  t.match(out, /\[32 bytes\]/, 'raw bytes are never dumped');
  const rec = JSON.parse(log.lines[1] ?? '{}') as Record<string, unknown>;
  t.equal(rec.ns, 'test.wifi');
  t.equal(rec.level, 'warn');
  t.equal(rec.psk, '[redacted]');
});

t.test('levels filter and lines are JSON', async (t) => {
  const lines: string[] = [];
  const log = new JsonLogger('x', {
    level: 'warn',
    write: (l) => lines.push(l),
    now: () => new Date(0),
  });
  log.debug('no');
  log.info('no');
  log.warn('yes', { n: 1, big: 10n, when: undefined });
  log.error('yes too');
  log.child('c').info('filtered in child too');
  t.equal(lines.length, 2);
  t.same(JSON.parse(lines[0] ?? ''), {
    ts: '1970-01-01T00:00:00.000Z',
    level: 'warn',
    ns: 'x',
    msg: 'yes',
    n: 1,
    big: '10',
  });
  SILENT.info('nothing');
  SILENT.child('x').error('nothing');
  t.pass('silent logger accepts calls');
});

t.test('short values are not registered (avoid masking everything)', async (t) => {
  const s = new SecretRegistry();
  s.add('ab');
  s.add(new Uint8Array([1, 2]));
  t.equal(s.scrub('ab ab'), 'ab ab');
});
