import t from 'tap';
import { cryptoRandom } from '../../base/random.js';

void t.test('cryptoRandom gives the asked number of fresh bytes', async (t) => {
  const a = cryptoRandom(32);
  const b = cryptoRandom(32);
  t.equal(a.length, 32);
  t.ok(a instanceof Uint8Array);
  t.notSame(Buffer.from(a), Buffer.from(b), 'two draws differ');
  t.equal(cryptoRandom(0).length, 0);
});
