import t from 'tap';
import { mkdtemp, readFile, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../hw/os/run.js';
import { newIdentity } from '../../protocol/identity.js';
import { encodeQrPayload } from '../../protocol/qr-payload.js';
import {
  LABEL_SPEC,
  idLines,
  labelsPerPage,
  qrMatrix,
  renderLabelPng,
  renderLabelSheetPdf,
  renderLabelSvg,
} from '../../provisioning/label.js';
import { encodePng, newBitmap } from '../../provisioning/png.js';
import { MM } from '../../provisioning/pdf.js';
import { zbarDecode } from './zbar.js';

const make = (k: number) =>
  Array.from({ length: k }, () => {
    const id = newIdentity();
    return { payload: encodeQrPayload(id), deviceId: id.deviceId };
  });

void t.test('PNG labels decode with zbarimg to the exact payload', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-label-'));
  const labels = make(5);
  const files: string[] = [];
  for (const [i, l] of labels.entries()) {
    const f = join(dir, `${i}.png`);
    await writeFile(f, renderLabelPng(l.payload, l.deviceId));
    files.push(f);
  }
  t.same(
    await zbarDecode(files),
    labels.map((l) => l.payload),
  );
  const png = await readFile(files[0]!);
  t.same(
    [...png.subarray(0, 8)],
    [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
    'PNG signature',
  );
  t.ok(png.includes(Buffer.from('pHYs')), 'carries its print size');
});

void t.test('matrix: version 4 at M; text lines', async (t) => {
  const [l] = make(1);
  const m = qrMatrix(l!.payload);
  t.equal(m.version, 4);
  t.equal(m.size, 33);
  t.same(idLines('ABCDEFGHIJKLMNOP'), ['ABCD-EFGH', 'IJKL-MNOP']);
  t.equal(LABEL_SPEC.errorCorrection, 'M');
});

void t.test(
  'SVG label: sized in mm, one path whose modules match the matrix, id as text',
  async (t) => {
    const [l] = make(1);
    const svg = renderLabelSvg(l!.payload, l!.deviceId);
    t.match(svg, /width="24mm" height="28mm"/);
    const [a, b] = idLines(l!.deviceId);
    t.match(svg, new RegExp(`>${a}</text>`));
    t.match(svg, new RegExp(`>${b}</text>`));
    // Re-rasterise the path runs and compare module by module.
    const m = qrMatrix(l!.payload);
    const mod = LABEL_SPEC.codeMm / (m.size + 8);
    const ox = (LABEL_SPEC.labelWidthMm - LABEL_SPEC.codeMm) / 2 + 4 * mod;
    const oy = 1 + 4 * mod;
    const dark = new Set<string>();
    for (const [, x, y, h] of svg.matchAll(/M([\d.]+) ([\d.]+)h([\d.]+)/g)) {
      const mx = Math.round((Number(x) - ox) / mod);
      const my = Math.round((Number(y) - oy) / mod);
      const len = Math.round(Number(h) / mod);
      for (let k = 0; k < len; k++) dark.add(`${mx + k},${my}`);
    }
    let mismatches = 0;
    for (let y = 0; y < m.size; y++)
      for (let x = 0; x < m.size; x++) if (m.isDark(x, y) !== dark.has(`${x},${y}`)) mismatches++;
    t.equal(mismatches, 0);
  },
);

/** Parse a binary PGM (P5) as pdftoppm -gray writes it. */
function parsePgm(buf: Buffer): { width: number; height: number; pixels: Buffer } {
  const header = /^P5\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(buf.subarray(0, 64).toString('latin1'));
  if (!header) throw new Error('not a PGM');
  return {
    width: Number(header[1]),
    height: Number(header[2]),
    pixels: buf.subarray(header[0].length),
  };
}

void t.test(
  'PDF sheet: renders with poppler; every label, cropped, decodes with zbarimg',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-sheet-'));
    const { cols, rows } = labelsPerPage();
    t.equal(cols * rows, 63);
    const labels = make(cols * rows + 2); // two pages
    const pdf = renderLabelSheetPdf(labels, 'Vigil test sheet');
    t.same(renderLabelSheetPdf(labels, 'Vigil test sheet'), pdf, 'deterministic output');
    await writeFile(join(dir, 'sheet.pdf'), pdf);
    const info = await run('pdfinfo', [join(dir, 'sheet.pdf')]);
    t.match(info.stdout.toString(), /Pages:\s+2/);
    t.match(info.stdout.toString(), /Page size:\s+595\.\d+ x 841\.\d+ pts \(A4\)/);
    const dpi = 300;
    await run('pdftoppm', ['-r', String(dpi), '-gray', join(dir, 'sheet.pdf'), join(dir, 'page')], {
      timeoutMs: 120_000,
    });
    const pages = (await readdir(dir)).filter((f) => f.startsWith('page')).sort();
    t.equal(pages.length, 2);
    const px = dpi / 25.4;
    const crops: string[] = [];
    for (const [p, name] of pages.entries()) {
      const img = parsePgm(await readFile(join(dir, name)));
      const onPage = labels.slice(p * 63, p * 63 + 63);
      for (const k of onPage.keys()) {
        const x0 = Math.round(
          (LABEL_SPEC.sheet.marginMm + (k % cols) * LABEL_SPEC.labelWidthMm) * px,
        );
        const y0 = Math.round(
          (LABEL_SPEC.sheet.marginMm + Math.floor(k / cols) * LABEL_SPEC.labelHeightMm) * px,
        );
        const w = Math.round(LABEL_SPEC.labelWidthMm * px);
        const h = Math.round(LABEL_SPEC.labelHeightMm * px);
        const bmp = newBitmap(w, h);
        for (let y = 0; y < h; y++) {
          const src = (y0 + y) * img.width + x0;
          bmp.pixels.set(img.pixels.subarray(src, src + w), y * w);
        }
        const f = join(dir, `crop-${p}-${String(k).padStart(2, '0')}.png`);
        await writeFile(f, encodePng(bmp));
        crops.push(f);
      }
    }
    const decoded = await zbarDecode(crops);
    t.same(
      decoded,
      labels.map((l) => l.payload),
      'all 65 labels on the rendered sheet decode to their payloads',
    );
    t.ok(MM > 2.8 && MM < 2.9);
  },
);
