import t from 'tap';
import {
  encodeKeyFile,
  generateSigningKey,
  isSealed,
  keyIdOf,
  openKeyFile,
  parseKeyFile,
  signBytes,
  verifyBytes,
} from '../../ota/keys.js';

t.test('sign and verify; key ids are stable hashes of the public key', async (tt) => {
  const k = generateSigningKey('targets');
  tt.equal(k.keyid, keyIdOf(k.public));
  tt.match(k.public.keyval.public, /^[0-9a-f]{64}$/);
  const data = Buffer.from('signed bytes');
  const sig = signBytes(k, data);
  tt.ok(verifyBytes(k.public, data, sig));
  tt.notOk(verifyBytes(k.public, Buffer.from('other bytes'), sig), 'other data');
  tt.notOk(verifyBytes(generateSigningKey('targets').public, data, sig), 'other key');
  tt.notOk(verifyBytes(k.public, data, 'zz'), 'garbage signature');
  tt.notOk(verifyBytes(k.public, data, sig.slice(0, 64)), 'short signature');
});

t.test('key files: clear and sealed', async (tt) => {
  const k = generateSigningKey('root');
  const clear = parseKeyFile(encodeKeyFile(k), 'clear.json');
  tt.notOk(isSealed(clear));
  const opened = openKeyFile(clear, 'clear.json');
  tt.equal(opened.keyid, k.keyid);
  tt.ok(verifyBytes(k.public, Buffer.from('x'), signBytes(opened, Buffer.from('x'))));

  const pass = Buffer.from('a long enough passphrase');
  const text = encodeKeyFile(k, pass, 12);
  tt.notMatch(text, /pkcs8/, 'no clear private key in a sealed file');
  const sealed = parseKeyFile(text, 'sealed.json');
  tt.ok(isSealed(sealed));
  tt.throws(() => openKeyFile(sealed, 'sealed.json'), /passphrase is needed/);
  tt.throws(
    () => openKeyFile(sealed, 'sealed.json', Buffer.from('the wrong passphrase')),
    /wrong passphrase/,
  );
  tt.equal(openKeyFile(sealed, 'sealed.json', pass).keyid, k.keyid);
  tt.throws(() => encodeKeyFile(k, Buffer.from('short')), /at least 8 bytes/);
});

t.test('bad key files are refused with the file named', async (tt) => {
  tt.throws(() => parseKeyFile('not json', 'x.json'), /x\.json: not JSON/);
  tt.throws(() => parseKeyFile('{}', 'y.json'), /y\.json: not a Vigil TUF key file/);
  const k = generateSigningKey('snapshot');
  const other = generateSigningKey('snapshot');
  const f = JSON.parse(encodeKeyFile(k)) as { public: unknown };
  f.public = other.public;
  tt.throws(() => parseKeyFile(JSON.stringify(f), 'z.json'), /key id does not match/);
  // Private part from another key than the public one claims.
  const g = JSON.parse(encodeKeyFile(k)) as { private: unknown };
  g.private = (JSON.parse(encodeKeyFile(other)) as { private: unknown }).private;
  tt.throws(
    () => openKeyFile(parseKeyFile(JSON.stringify(g), 'w.json'), 'w.json'),
    /does not match its public key/,
  );
});
