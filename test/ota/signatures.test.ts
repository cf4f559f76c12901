import t from 'tap';
import { generateSigningKey } from '../../ota/keys.js';
import {
  countValidSignatures,
  encodeEnvelope,
  meetsThreshold,
  signEnvelope,
} from '../../ota/signatures.js';

t.test('thresholds count distinct authorised keys with valid signatures', async (tt) => {
  const a = generateSigningKey('root');
  const b = generateSigningKey('root');
  const stranger = generateSigningKey('root');
  const keys = { [a.keyid]: a.public, [b.keyid]: b.public, [stranger.keyid]: stranger.public };
  const role = { keyids: [a.keyid, b.keyid], threshold: 2 };
  const signed = { _type: 'root', version: 1 };
  const both = signEnvelope(signed, [a, b, a]);
  tt.equal(both.signatures.length, 2, 'a key signs once');
  tt.ok(meetsThreshold(signed, both.signatures, keys, role));
  const one = signEnvelope(signed, [a]);
  tt.equal(
    countValidSignatures(signed, [...one.signatures, ...one.signatures], keys, role),
    1,
    'repeats count once',
  );
  tt.notOk(meetsThreshold(signed, one.signatures, keys, role));
  const withStranger = signEnvelope(signed, [a, stranger]);
  tt.equal(
    countValidSignatures(signed, withStranger.signatures, keys, role),
    1,
    'unauthorised keys do not count',
  );
  tt.equal(
    countValidSignatures({ ...signed, version: 2 }, both.signatures, keys, role),
    0,
    'signatures bind the content',
  );
  tt.equal(
    countValidSignatures(signed, both.signatures, {}, role),
    0,
    'unknown key ids do not count',
  );
  tt.match(encodeEnvelope(both), /^\{\n "signatures"/);
});
