/**
 * QR labels. The `qrcode` package encodes the payload (alphanumeric segment,
 * error correction M); this module lays the module matrix out as
 *
 *  - PNG: code + quiet zone + the device id in two lines under it, 10 px per
 *    module, with a pHYs chunk so it prints at the designed size;
 *  - SVG: the full 24 x 28 mm label (code as one path, id as text);
 *  - PDF: an A4 sheet of labels with cut lines, all vector, no fonts.
 *
 * Label spec (docs/pairing.md): QR version 4 (33 modules) + 4-module quiet zone
 * = 41 modules over 20 mm -> 0.49 mm per module (5.8 dots at 300 dpi). Level M
 * restores ~15% damage — a scuffed sticker — while keeping the code at version 4;
 * Q or H would push it to version 5/6 and smaller modules at the same size.
 */
import QRCode from 'qrcode';
import { formatDeviceId } from '../protocol/identity.js';
import { GLYPH_H, GLYPH_W, glyphCells, textCells } from './font.js';
import { encodePng, fillRect, newBitmap } from './png.js';
import { MM, PdfPage, buildPdf, n } from './pdf.js';

export const LABEL_SPEC = {
  errorCorrection: 'M',
  quietZoneModules: 4,
  /** Code incl. quiet zone, millimetres. */
  codeMm: 20,
  labelWidthMm: 24,
  labelHeightMm: 28,
  /** Bitmap-font cell size on the printed label. */
  textCellMm: 0.3,
  pngPxPerModule: 10,
  pngPxPerTextCell: 5,
  sheet: { widthMm: 210, heightMm: 297, marginMm: 10 },
} as const;

export interface QrMatrix {
  readonly size: number;
  readonly version: number;
  isDark(x: number, y: number): boolean;
}

export function qrMatrix(payload: string): QrMatrix {
  const qr = QRCode.create([{ data: payload, mode: 'alphanumeric' }], {
    errorCorrectionLevel: LABEL_SPEC.errorCorrection,
  });
  const { size, data } = qr.modules;
  return { size, version: qr.version, isDark: (x, y) => data[y * size + x] === 1 };
}

/** The id as printed: two lines of 9 characters ("ABCD-EFGH", "IJKL-MNOP"). */
export function idLines(deviceId: string): [string, string] {
  const f = formatDeviceId(deviceId);
  return [f.slice(0, 9), f.slice(10)];
}

/** Horizontal runs of dark modules: [x, y, length]. */
function runs(m: QrMatrix): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let y = 0; y < m.size; y++) {
    let x = 0;
    while (x < m.size) {
      if (!m.isDark(x, y)) {
        x++;
        continue;
      }
      const start = x;
      while (x < m.size && m.isDark(x, y)) x++;
      out.push([start, y, x - start]);
    }
  }
  return out;
}

export function renderLabelPng(payload: string, deviceId: string): Buffer {
  const m = qrMatrix(payload);
  const px = LABEL_SPEC.pngPxPerModule;
  const q = LABEL_SPEC.quietZoneModules;
  const codePx = (m.size + 2 * q) * px;
  const cell = LABEL_SPEC.pngPxPerTextCell;
  const lineGap = 2 * cell;
  const lines = idLines(deviceId);
  const height = codePx + 2 * GLYPH_H * cell + lineGap + 2 * px;
  const bmp = newBitmap(codePx, height);
  for (const [x, y, len] of runs(m)) fillRect(bmp, (x + q) * px, (y + q) * px, len * px, px);
  lines.forEach((line, i) => {
    const x0 = Math.floor((codePx - textCells(line) * cell) / 2);
    const y0 = codePx + i * (GLYPH_H * cell + lineGap);
    Array.from(line, (c) => c).forEach((ch, k) => {
      for (const [cx, cy] of glyphCells(ch))
        fillRect(bmp, x0 + (k * (GLYPH_W + 1) + cx) * cell, y0 + cy * cell, cell, cell);
    });
  });
  const dpi = codePx / (LABEL_SPEC.codeMm / 25.4);
  return encodePng(bmp, dpi);
}

export function renderLabelSvg(payload: string, deviceId: string): string {
  const m = qrMatrix(payload);
  const { labelWidthMm: W, labelHeightMm: H, codeMm, quietZoneModules: q } = LABEL_SPEC;
  const mod = codeMm / (m.size + 2 * q);
  const ox = (W - codeMm) / 2 + q * mod;
  const oy = 1 + q * mod;
  const d = runs(m)
    .map(
      ([x, y, len]) =>
        `M${n(ox + x * mod)} ${n(oy + y * mod)}h${n(len * mod)}v${n(mod)}h${n(-len * mod)}z`,
    )
    .join('');
  const [l1, l2] = idLines(deviceId);
  const textY = 1 + codeMm + 0.4;
  const fs = 2.4;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}mm" height="${H}mm" viewBox="0 0 ${W} ${H}">`,
    `<title>Vigil ${formatDeviceId(deviceId)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<path fill="#000" d="${d}"/>`,
    `<text x="${n(W / 2)}" y="${n(textY + fs)}" font-family="DejaVu Sans Mono, monospace" font-size="${fs}" text-anchor="middle">${l1}</text>`,
    `<text x="${n(W / 2)}" y="${n(textY + 2 * fs + 0.4)}" font-family="DejaVu Sans Mono, monospace" font-size="${fs}" text-anchor="middle">${l2}</text>`,
    `</svg>`,
    '',
  ].join('\n');
}

export interface LabelInput {
  readonly payload: string;
  readonly deviceId: string;
}

/** Labels per A4 page (7 x 9 = 63). */
export function labelsPerPage(): { cols: number; rows: number } {
  const { sheet, labelWidthMm, labelHeightMm } = LABEL_SPEC;
  return {
    cols: Math.floor((sheet.widthMm - 2 * sheet.marginMm) / labelWidthMm),
    rows: Math.floor((sheet.heightMm - 2 * sheet.marginMm) / labelHeightMm),
  };
}

function drawLabel(page: PdfPage, left: number, top: number, label: LabelInput): void {
  const { labelWidthMm: W, labelHeightMm: H, codeMm, quietZoneModules: q, textCellMm } = LABEL_SPEC;
  // PDF origin is bottom-left; work in mm from the label's top-left, convert at the end.
  const box = (x: number, y: number, w: number, h: number): void => {
    page.rect((left + x) * MM, page.height - (top + y + h) * MM, w * MM, h * MM);
  };
  page.outline(left * MM, page.height - (top + H) * MM, W * MM, H * MM, 0.75, 0.2);
  const m = qrMatrix(label.payload);
  const mod = codeMm / (m.size + 2 * q);
  const ox = (W - codeMm) / 2 + q * mod;
  const oy = 1 + q * mod;
  for (const [x, y, len] of runs(m)) box(ox + x * mod, oy + y * mod, len * mod, mod);
  idLines(label.deviceId).forEach((line, i) => {
    const x0 = (W - textCells(line) * textCellMm) / 2;
    const y0 = 1 + codeMm + 0.3 + i * (GLYPH_H + 2) * textCellMm;
    Array.from(line, (c) => c).forEach((ch, k) => {
      for (const [cx, cy] of glyphCells(ch)) {
        box(
          x0 + (k * (GLYPH_W + 1) + cx) * textCellMm,
          y0 + cy * textCellMm,
          textCellMm,
          textCellMm,
        );
      }
    });
  });
}

/** One print-ready PDF with every label of the batch, 63 to an A4 page. */
export function renderLabelSheetPdf(labels: readonly LabelInput[], title: string): Buffer {
  const { sheet, labelWidthMm: W, labelHeightMm: H } = LABEL_SPEC;
  const { cols, rows } = labelsPerPage();
  const perPage = cols * rows;
  const pages: PdfPage[] = [];
  for (let i = 0; i < labels.length; i += perPage) {
    const page = new PdfPage(sheet.widthMm * MM, sheet.heightMm * MM);
    labels.slice(i, i + perPage).forEach((label, k) => {
      const c = k % cols;
      const r = Math.floor(k / cols);
      drawLabel(page, sheet.marginMm + c * W, sheet.marginMm + r * H, label);
    });
    pages.push(page);
  }
  return buildPdf(pages, title);
}
