import t from 'tap';
import { inflateSync, crc32 } from 'node:zlib';
import { encodePng, fillRect, newBitmap } from '../../provisioning/png.js';

void t.test('encodes a greyscale bitmap that inflates back to the same rows', async (t) => {
  const b = newBitmap(7, 3);
  fillRect(b, 1, 1, 3, 1);
  fillRect(b, -5, -5, 2, 2); // clipped away entirely
  fillRect(b, 6, 2, 10, 10, 128); // clipped at the edge
  const png = encodePng(b, 300);
  const chunks: { type: string; data: Buffer }[] = [];
  for (let off = 8; off < png.length;) {
    const len = png.readUInt32BE(off);
    const type = png.subarray(off + 4, off + 8).toString('latin1');
    const data = png.subarray(off + 8, off + 8 + len);
    t.equal(
      png.readUInt32BE(off + 8 + len),
      crc32(png.subarray(off + 4, off + 8 + len)),
      `${type} crc`,
    );
    chunks.push({ type, data });
    off += 12 + len;
  }
  t.same(
    chunks.map((c) => c.type),
    ['IHDR', 'pHYs', 'IDAT', 'IEND'],
  );
  const ihdr = chunks[0]!.data;
  t.equal(ihdr.readUInt32BE(0), 7);
  t.equal(ihdr.readUInt32BE(4), 3);
  t.equal(chunks[1]!.data.readUInt32BE(0), Math.round(300 / 0.0254));
  const raw = inflateSync(chunks[2]!.data);
  t.equal(raw.length, 3 * 8);
  t.same([...raw.subarray(8, 16)], [0, 255, 0, 0, 0, 255, 255, 255], 'row 1 with filter byte');
  t.same([...raw.subarray(16, 24)], [0, 255, 255, 255, 255, 255, 255, 128], 'row 2 clipped fill');
  t.notOk(encodePng(b).includes(Buffer.from('pHYs')), 'no pHYs without dpi');
});
