import t from 'tap';
import { Fmp4Resync } from '../../../app/viewer/fmp4.js';

function box(type: string, len: number): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt32BE(len, 0);
  b.write(type, 4, 'ascii');
  return b;
}

t.test('passes through until a gap, then resumes at the next moof', async (t) => {
  const r = new Fmp4Resync();
  const a = Buffer.concat([box('moof', 40), box('mdat', 60)]);
  t.same(r.push(a, false), a, 'no gap: unchanged');
  const partial = box('mdat', 100).subarray(30); // the middle of a fragment
  t.equal(r.push(partial, true).length, 0, 'after a gap the partial fragment is dropped');
  const next = Buffer.concat([Buffer.from('tail-of-mdat'), box('moof', 40), box('mdat', 20)]);
  const out = r.push(next, false);
  t.equal(out.toString('ascii', 4, 8), 'moof', 'resumes at the moof box');
  t.equal(out.length, 60);
  t.same(r.push(a, false), a, 'synced again');
});

t.test('a moof split across two chunks is still found', async (t) => {
  const r = new Fmp4Resync();
  const m = Buffer.concat([Buffer.from('xxxx'), box('moof', 24)]);
  t.equal(r.push(m.subarray(0, 9), true).length, 0);
  const out = r.push(m.subarray(9), false);
  t.equal(out.toString('ascii', 4, 8), 'moof');
  t.equal(out.length, 24);
});
