import t from 'tap';
import { randomBytes } from 'node:crypto';
import {
  generateRecoveryKey,
  normalizeRecoveryKey,
  recoveryKeyBytes,
} from '../../../firmware/storage/recovery-key.js';

void t.test('recovery keys', async (t) => {
  const k = generateRecoveryKey((n) => new Uint8Array(randomBytes(n)));
  t.match(k, /^([0-9A-HJKMNP-TV-Z]{4}-){7}[0-9A-HJKMNP-TV-Z]{4}$/);
  t.not(
    k,
    generateRecoveryKey((n) => new Uint8Array(randomBytes(n))),
  );
  t.equal(
    generateRecoveryKey((n) => new Uint8Array(n)),
    '0000-0000-0000-0000-0000-0000-0000-0000',
  );
  t.equal(normalizeRecoveryKey(k.toLowerCase().replace(/-/g, ' ')), k);
  t.equal(
    normalizeRecoveryKey('oooo-iiii-llll-uuuu-0000-0000-0000-0000'),
    '0000-1111-1111-VVVV-0000-0000-0000-0000',
    'look-alikes',
  );
  t.equal(normalizeRecoveryKey('too short'), undefined);
  t.equal(normalizeRecoveryKey('!!!!-0000-0000-0000-0000-0000-0000-0000'), undefined);
  t.same(recoveryKeyBytes('AB'), new Uint8Array([65, 66]));
});
