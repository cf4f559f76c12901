import t from 'tap';
import { inflateSync } from 'node:zlib';
import { PdfPage, buildPdf, n } from '../../provisioning/pdf.js';

void t.test('number formatting', async (t) => {
  t.equal(n(1.23456), '1.235');
  t.equal(n(-0.0001), '0');
  t.equal(n(10), '10');
});

void t.test('a two-page PDF with a correct xref table and content streams', async (t) => {
  const a = new PdfPage(100, 200);
  a.rect(1, 2, 3, 4);
  a.outline(0, 0, 10, 10, 0.5);
  const b = new PdfPage(50, 50);
  const pdf = buildPdf([a, b], 'T (with) \\ and é');
  const text = pdf.toString('latin1');
  t.match(text, /^%PDF-1\.4\n/);
  t.match(text, /%%EOF\n$/);
  t.match(text, /\/Count 2/);
  t.match(text, /\/Title \(T \\\(with\\\) \\\\ and \?\)/);
  const startxref = Number(/startxref\n(\d+)\n/.exec(text)?.[1]);
  t.equal(text.slice(startxref, startxref + 4), 'xref');
  const entries = [...text.slice(startxref).matchAll(/^(\d{10}) 00000 n $/gm)].map((m) =>
    Number(m[1]),
  );
  t.equal(entries.length, 7, 'catalog, pages, info, 2 x (content, page)');
  for (const [i, off] of entries.entries())
    t.equal(text.slice(off, off + `${i + 1} 0 obj`.length), `${i + 1} 0 obj`);
  const stream = /stream\n([\s\S]*?)\nendstream/.exec(text)?.[1] ?? '';
  t.equal(
    inflateSync(Buffer.from(stream, 'latin1')).toString(),
    '0 g 1 2 3 4 re f\n0.5 G 0.25 w 0 0 10 10 re S\n',
  );
});
