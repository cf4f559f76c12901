import t from 'tap';
import {
  chooseLogFormat,
  JsonLogger,
  MemoryLogger,
  SecretRegistry,
  SILENT,
} from '../../base/logger.js';

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

t.test('human format: one readable line per record, secrets redacted as in JSON', async (t) => {
  const secrets = new SecretRegistry();
  secrets.add(PSK);
  secrets.add(WIFI);
  secrets.add(KEY);
  const lines: string[] = [];
  const at = new Date(2026, 0, 2, 3, 4, 5, 67); // local time, as the line shows it
  const root = new JsonLogger('vigil', {
    format: 'human',
    level: 'debug',
    write: (l) => lines.push(l),
    secrets,
    now: () => at,
  });
  const clips = root.child('media').child('media').child('clips');
  root.info('Vigil starting');
  clips.warn('clip closed', { itemId: 'ab12', durationMs: 13000, why: 'post-roll elapsed' });
  root.child('wifi').error(`joining with ${WIFI}\nsecond line\u001b[31m`, {
    psk: PSK,
    note: `psk was ${PSK}`,
    material: KEY,
    err: new Error(`bad key ${KEY.toString('hex')}`),
    list: [1, 'two'],
  });
  root.child('x').debug('empty', { s: '', u: undefined });
  t.same(lines.slice(0, 2), [
    '03:04:05.067 INFO  Vigil starting',
    '03:04:05.067 WARN  media.clips: clip closed itemId=ab12 durationMs=13000 why="post-roll elapsed"',
  ]);
  const err = lines[2] ?? '';
  t.equal(
    err,
    '03:04:05.067 ERROR wifi: joining with [redacted]\\nsecond line\\u001b[31m psk="[redacted]"' +
      ' note="psk was [redacted]" material="[32 bytes]"' +
      ' err={"name":"Error","message":"bad key [redacted]"} list=[1,"two"]',
    'newlines and escape codes are escaped, secret fields and values redacted',
  );
  t.equal(lines[3], '03:04:05.067 DEBUG x: empty s="" u=undefined');
  const out = lines.join('\n');
  t.equal(out.split('\n').length, 4, 'one line per record');
  for (const secret of [PSK, WIFI, KEY.toString('hex')]) t.notOk(out.includes(secret));
});

t.test('chooseLogFormat: flag, then VIGIL_LOG_FORMAT, then the terminal decides', async (t) => {
  t.equal(chooseLogFormat(undefined, {}, true), 'human', 'a terminal gets human lines');
  t.equal(chooseLogFormat(undefined, {}, false), 'json', 'journald / a pipe gets JSON');
  t.equal(chooseLogFormat(undefined, { VIGIL_LOG_FORMAT: 'json' }, true), 'json');
  t.equal(chooseLogFormat('human', { VIGIL_LOG_FORMAT: 'json' }, false), 'human', 'flag wins');
  t.equal(chooseLogFormat(undefined, { VIGIL_LOG_FORMAT: '' }, false), 'json');
  t.equal(chooseLogFormat('xml', {}, true), undefined, 'unknown names are refused');
});

t.test('a child named like its parent does not repeat the area', async (t) => {
  const lines: string[] = [];
  const root = new JsonLogger('vigil', { write: (l) => lines.push(l) });
  root.child('media').child('media').child('clips').info('x');
  t.match(lines[0], /"vigil\.media\.clips"/);
  t.notMatch(lines[0], /media\.media/);
});
