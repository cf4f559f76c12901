/**
 * A small PDF 1.4 writer: pages of filled rectangles and stroked lines, nothing
 * else. Labels need only that (QR modules and the bitmap-font id are
 * rectangles), so there are no fonts to embed and the file is self-contained
 * and print-ready. Output is deterministic (no dates, no random ids) so two
 * runs over the same batch give byte-identical sheets.
 */
import { deflateSync } from 'node:zlib';

export const MM = 72 / 25.4;

/** Number formatting for content streams: at most 3 decimals, no exponent. */
export function n(v: number): string {
  const r = Math.round(v * 1000) / 1000;
  return Object.is(r, -0) ? '0' : String(r);
}

export class PdfPage {
  readonly width: number;
  readonly height: number;
  readonly #ops: string[] = [];

  /** Size in points. */
  constructor(width: number, height: number) {
    this.width = width;
    this.height = height;
  }

  /** Filled rectangle, origin bottom-left, grey 0 (black) .. 1 (white). */
  rect(x: number, y: number, w: number, h: number, grey = 0): void {
    this.#ops.push(`${n(grey)} g ${n(x)} ${n(y)} ${n(w)} ${n(h)} re f`);
  }

  /** Stroked rectangle outline. */
  outline(x: number, y: number, w: number, h: number, grey = 0, lineWidth = 0.25): void {
    this.#ops.push(`${n(grey)} G ${n(lineWidth)} w ${n(x)} ${n(y)} ${n(w)} ${n(h)} re S`);
  }

  get content(): string {
    return this.#ops.join('\n') + '\n';
  }
}

function pdfString(s: string): string {
  return `(${s.replace(/[\\()]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, '?')})`;
}

export function buildPdf(pages: readonly PdfPage[], title: string): Buffer {
  const objects: Buffer[] = [];
  const add = (body: Buffer | string): number => {
    objects.push(typeof body === 'string' ? Buffer.from(body, 'latin1') : body);
    return objects.length;
  };
  // 1: catalog, 2: pages tree, 3: info; pages follow.
  add('<< /Type /Catalog /Pages 2 0 R >>');
  add(''); // placeholder for the pages tree, filled once kids are known
  add(`<< /Title ${pdfString(title)} /Producer (vigil factory) >>`);
  const kids: number[] = [];
  for (const p of pages) {
    const data = deflateSync(Buffer.from(p.content, 'latin1'), { level: 9 });
    const contentId = add(
      Buffer.concat([
        Buffer.from(`<< /Length ${data.length} /Filter /FlateDecode >>\nstream\n`, 'latin1'),
        data,
        Buffer.from('\nendstream', 'latin1'),
      ]),
    );
    kids.push(
      add(
        `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 ${n(p.width)} ${n(p.height)}] /Contents ${contentId} 0 R /Resources << >> >>`,
      ),
    );
  }
  objects[1] = Buffer.from(
    `<< /Type /Pages /Kids [${kids.map((k) => `${k} 0 R`).join(' ')}] /Count ${kids.length} >>`,
    'latin1',
  );

  const parts: Buffer[] = [Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  let offset = parts[0]?.length ?? 0;
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    const obj = Buffer.concat([
      Buffer.from(`${i + 1} 0 obj\n`, 'latin1'),
      body,
      Buffer.from('\nendobj\n', 'latin1'),
    ]);
    offsets.push(offset);
    parts.push(obj);
    offset += obj.length;
  });
  const xref = [
    `xref\n0 ${objects.length + 1}\n`,
    '0000000000 65535 f \n',
    ...offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`),
  ].join('');
  parts.push(
    Buffer.from(
      `${xref}trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /Info 3 0 R >>\nstartxref\n${offset}\n%%EOF\n`,
      'latin1',
    ),
  );
  return Buffer.concat(parts);
}
