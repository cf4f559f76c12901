import t from 'tap';
import { GLYPH_H, GLYPH_W, glyphCells, textCells } from '../../provisioning/font.js';

void t.test('every base32 character and the separator has a glyph within 5x7', async (t) => {
  for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-0189 ') {
    const cells = glyphCells(ch);
    for (const [x, y] of cells)
      t.ok(x >= 0 && x < GLYPH_W && y >= 0 && y < GLYPH_H, `${ch} in bounds`);
    if (ch !== ' ') t.ok(cells.length > 0, `${ch} has ink`);
  }
  const sig = (c: string) => JSON.stringify(glyphCells(c));
  const all = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.split(' ').join('').match(/./g)!.map(sig);
  t.equal(new Set(all).size, all.length, 'no two base32 glyphs look the same');
  t.throws(() => glyphCells('?'), /no glyph/);
  t.equal(textCells(''), 0);
  t.equal(textCells('AB'), 11);
});
