/**
 * QR labels, drawn with well-kept libraries: the `qrcode` package encodes the
 * payload (alphanumeric segment, error correction M) and renders it with its
 * own PNG and SVG renderers; `pdfkit` lays out the print sheet with real text
 * in the PDF standard fonts (Helvetica, Courier: nothing embedded).
 *
 *  - PNG: the code alone (qrcode's PNG renderer), for label printers that want
 *    a picture;
 *  - SVG: the full label in millimetres (qrcode's SVG of the code + text);
 *  - PDF: a batch header page, then the labels on A4 with cut lines.
 *
 * A label reads, top to bottom: "Vigil", the code, "Scan with the Vigil app to
 * pair", "Keep private — this code pairs the camera", the hotspot name and the
 * device id. Text is at least 6.5 pt (2.3 mm) at the printed size.
 *
 * Label spec (docs/pairing.md): QR version 4 (33 modules) + 4-module quiet zone
 * = 41 modules over 24 mm -> 0.59 mm per module (7 dots at 300 dpi). Level M
 * restores ~15% damage — a scuffed sticker — while keeping the code at version 4.
 *
 * The PDF is byte-identical for the same input: its CreationDate (and so the
 * trailer ID pdfkit derives from the info dictionary) is the batch's date, not
 * the clock.
 */
import PDFDocument from 'pdfkit';
import QRCode from 'qrcode';
import { formatDeviceId } from '../protocol/identity.js';

export const LABEL_SPEC = {
  errorCorrection: 'M',
  quietZoneModules: 4,
  /** Code incl. quiet zone, millimetres. */
  codeMm: 24,
  labelWidthMm: 40,
  labelHeightMm: 46,
  /** Smallest text on the label, points. */
  minTextPt: 6.5,
  pngPxPerModule: 10,
  sheet: { widthMm: 210, heightMm: 297, marginMm: 10 },
} as const;

export const LABEL_TEXT = {
  product: 'Vigil',
  scan: 'Scan with the Vigil app to pair',
  keepPrivate: ['Keep private \u2014 this code', 'pairs the camera'],
} as const;

/** PDF points per millimetre. */
export const MM = 72 / 25.4;

/** The CreationDate of a sheet when the caller gives none (fixed: output must not vary). */
const DEFAULT_DATE = new Date(Date.UTC(2026, 0, 1));

export interface QrMatrix {
  readonly size: number;
  readonly version: number;
  isDark(x: number, y: number): boolean;
}

const segments = (payload: string): QRCode.QRCodeSegment[] => [
  { data: payload, mode: 'alphanumeric' },
];

export function qrMatrix(payload: string): QrMatrix {
  const qr = QRCode.create(segments(payload), {
    errorCorrectionLevel: LABEL_SPEC.errorCorrection,
  });
  const { size, data } = qr.modules;
  return { size, version: qr.version, isDark: (x, y) => data[y * size + x] === 1 };
}

/** The id as printed: "ABCD-EFGH-IJKL-MNOP". */
export function idLines(deviceId: string): [string, string] {
  const f = formatDeviceId(deviceId);
  return [f.slice(0, 9), f.slice(10)];
}

/** The code alone, by qrcode's PNG renderer (10 px per module, quiet zone included). */
export async function renderLabelPng(payload: string): Promise<Buffer> {
  return QRCode.toBuffer(segments(payload), {
    type: 'png',
    errorCorrectionLevel: LABEL_SPEC.errorCorrection,
    margin: LABEL_SPEC.quietZoneModules,
    scale: LABEL_SPEC.pngPxPerModule,
  });
}

/** qrcode's SVG: the viewBox size and the dark modules as one stroked path. */
async function qrSvg(payload: string): Promise<{ svg: string; viewBox: number; d: string }> {
  const svg = await QRCode.toString(segments(payload), {
    type: 'svg',
    errorCorrectionLevel: LABEL_SPEC.errorCorrection,
    margin: LABEL_SPEC.quietZoneModules,
  });
  const box = /viewBox="0 0 (\d+) \d+"/.exec(svg);
  const d = /<path stroke="#000000" d="([^"]+)"/.exec(svg);
  if (!box || !d) throw new Error('unexpected SVG from the qrcode package');
  return { svg, viewBox: Number(box[1]), d: d[1] ?? '' };
}

export interface LabelInput {
  readonly payload: string;
  readonly deviceId: string;
  /** The pairing hotspot's name (protocol/identity.ts deriveIdentity). */
  readonly ssid: string;
}

/** Where each line sits on a label: millimetres from its top edge, and the size in points. */
const LAYOUT = {
  product: { y: 2, pt: 10, font: 'Helvetica-Bold' },
  code: { y: 5.8 },
  scan: { y: 30.2, pt: 6.5, font: 'Helvetica' },
  keep1: { y: 33, pt: 6.5, font: 'Helvetica-Bold' },
  keep2: { y: 35.5, pt: 6.5, font: 'Helvetica-Bold' },
  hotspot: { y: 38.6, pt: 6.5, font: 'Helvetica' },
  id: { y: 41.4, pt: 7, font: 'Courier-Bold' },
} as const;

const hotspotLine = (ssid: string): string => `Hotspot ${ssid}`;
const idLine = (deviceId: string): string => `ID ${formatDeviceId(deviceId)}`;

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The full label in millimetres: qrcode's SVG of the code, nested, and the text. */
export async function renderLabelSvg(label: LabelInput): Promise<string> {
  const { labelWidthMm: W, labelHeightMm: H, codeMm } = LABEL_SPEC;
  const { svg } = await qrSvg(label.payload);
  const code = svg
    .trim()
    .replace(
      '<svg xmlns="http://www.w3.org/2000/svg"',
      `<svg x="${(W - codeMm) / 2}" y="${LAYOUT.code.y}" width="${codeMm}" height="${codeMm}"`,
    );
  const text = (line: { y: number; pt: number; font: string }, value: string): string => {
    const size = (line.pt / 72) * 25.4;
    const family = line.font.startsWith('Courier')
      ? 'Courier, monospace'
      : 'Helvetica, Arial, sans-serif';
    const weight = line.font.endsWith('Bold') ? ' font-weight="bold"' : '';
    return `<text x="${W / 2}" y="${(line.y + size * 0.8).toFixed(2)}" font-family="${family}" font-size="${size.toFixed(2)}"${weight} text-anchor="middle">${esc(value)}</text>`;
  };
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}mm" height="${H}mm" viewBox="0 0 ${W} ${H}">`,
    `<title>Vigil ${formatDeviceId(label.deviceId)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    text(LAYOUT.product, LABEL_TEXT.product),
    code,
    text(LAYOUT.scan, LABEL_TEXT.scan),
    text(LAYOUT.keep1, LABEL_TEXT.keepPrivate[0]),
    text(LAYOUT.keep2, LABEL_TEXT.keepPrivate[1]),
    text(LAYOUT.hotspot, hotspotLine(label.ssid)),
    text(LAYOUT.id, idLine(label.deviceId)),
    '</svg>',
    '',
  ].join('\n');
}

/** Labels per A4 page (4 x 6 = 24). */
export function labelsPerPage(): { cols: number; rows: number } {
  const { sheet, labelWidthMm, labelHeightMm } = LABEL_SPEC;
  return {
    cols: Math.floor((sheet.widthMm - 2 * sheet.marginMm) / labelWidthMm),
    rows: Math.floor((sheet.heightMm - 2 * sheet.marginMm) / labelHeightMm),
  };
}

/** Top-left corner of label `k` of a page, millimetres. */
export function labelOrigin(k: number): { x: number; y: number } {
  const { cols } = labelsPerPage();
  const { sheet, labelWidthMm: W, labelHeightMm: H } = LABEL_SPEC;
  return { x: sheet.marginMm + (k % cols) * W, y: sheet.marginMm + Math.floor(k / cols) * H };
}

type Doc = InstanceType<typeof PDFDocument>;

function centred(
  doc: Doc,
  left: number,
  line: { y: number; pt: number; font: string },
  top: number,
  value: string,
): void {
  const W = LABEL_SPEC.labelWidthMm * MM;
  doc
    .font(line.font)
    .fontSize(line.pt)
    .text(value, left * MM, (top + line.y) * MM, { width: W, align: 'center', lineBreak: false });
}

async function drawLabel(doc: Doc, left: number, top: number, label: LabelInput): Promise<void> {
  const { labelWidthMm: W, labelHeightMm: H, codeMm } = LABEL_SPEC;
  // cut line
  doc
    .save()
    .lineWidth(0.2)
    .strokeColor('#999999')
    .rect(left * MM, top * MM, W * MM, H * MM)
    .stroke()
    .restore();
  centred(doc, left, LAYOUT.product, top, LABEL_TEXT.product);
  // the code: qrcode's SVG path (one stroke of width 1 per run of dark modules), scaled
  const { viewBox, d } = await qrSvg(label.payload);
  const scale = (codeMm * MM) / viewBox;
  doc
    .save()
    .translate((left + (W - codeMm) / 2) * MM, (top + LAYOUT.code.y) * MM)
    .scale(scale)
    .path(d)
    .lineWidth(1)
    .lineCap('butt')
    .strokeColor('#000000')
    .stroke()
    .restore();
  centred(doc, left, LAYOUT.scan, top, LABEL_TEXT.scan);
  centred(doc, left, LAYOUT.keep1, top, LABEL_TEXT.keepPrivate[0]);
  centred(doc, left, LAYOUT.keep2, top, LABEL_TEXT.keepPrivate[1]);
  centred(doc, left, LAYOUT.hotspot, top, hotspotLine(label.ssid));
  centred(doc, left, LAYOUT.id, top, idLine(label.deviceId));
}

export interface SheetInfo {
  readonly title: string;
  readonly batchId: string;
  /** The batch's date: printed on the header page and the PDF's CreationDate. */
  readonly createdAt?: Date;
}

/** The batch header page: what the sheet is, how to use and keep it, and what is on it. */
function drawHeader(doc: Doc, labels: readonly LabelInput[], info: SheetInfo, pages: number): void {
  const m = LABEL_SPEC.sheet.marginMm * MM;
  const width = (LABEL_SPEC.sheet.widthMm - 2 * LABEL_SPEC.sheet.marginMm) * MM;
  const date = (info.createdAt ?? DEFAULT_DATE).toISOString();
  doc.font('Helvetica-Bold').fontSize(20).text('Vigil camera labels', m, m, { width });
  doc.moveDown(0.5);
  doc
    .font('Helvetica')
    .fontSize(11)
    .text(`Batch ${info.batchId}`, { width })
    .text(`Created ${date}`, { width })
    .text(`${labels.length} label(s) on ${pages} page(s) after this one`, { width });
  doc.moveDown(1);
  doc
    .font('Helvetica-Bold')
    .fontSize(11)
    .text('Keep these sheets private.', { width })
    .font('Helvetica')
    .text(
      'Each code pairs its camera: anyone who scans it while the camera is in pairing mode can ' +
        'pair a phone and watch. Stick each label on its own camera (match the ID on the label ' +
        'with the one in the card image), and shred spoiled labels.',
      { width },
    );
  doc.moveDown(1);
  doc
    .text(
      `Print at 100% (no "fit to page"): each label is ${LABEL_SPEC.labelWidthMm} x ` +
        `${LABEL_SPEC.labelHeightMm} mm and its code ${LABEL_SPEC.codeMm} mm wide. Cut along ` +
        'the grey lines.',
      { width },
    )
    .moveDown(1);
  doc.font('Helvetica-Bold').text('Cameras in this batch', { width });
  doc.font('Courier').fontSize(9);
  const shown = labels.slice(0, 40);
  for (const l of shown) doc.text(`${formatDeviceId(l.deviceId)}   ${l.ssid}`, { width });
  if (labels.length > shown.length)
    doc
      .font('Helvetica')
      .text(`... and ${labels.length - shown.length} more (see manifest.csv)`, { width });
}

/** One print-ready PDF: a header page, then every label of the batch, 24 to an A4 page. */
export async function renderLabelSheetPdf(
  labels: readonly LabelInput[],
  info: SheetInfo,
): Promise<Buffer> {
  const { sheet } = LABEL_SPEC;
  const { cols, rows } = labelsPerPage();
  const perPage = cols * rows;
  const pages = Math.ceil(labels.length / perPage);
  const doc = new PDFDocument({
    size: [sheet.widthMm * MM, sheet.heightMm * MM],
    margin: 0,
    autoFirstPage: true,
    compress: true,
    info: {
      Title: info.title,
      Creator: 'Vigil',
      Producer: 'Vigil (pdfkit)',
      CreationDate: info.createdAt ?? DEFAULT_DATE,
    },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => {
      resolve(Buffer.concat(chunks));
    });
    doc.on('error', reject);
  });
  drawHeader(doc, labels, info, pages);
  for (let i = 0; i < labels.length; i += perPage) {
    doc.addPage({ size: [sheet.widthMm * MM, sheet.heightMm * MM], margin: 0 });
    for (const [k, label] of labels.slice(i, i + perPage).entries()) {
      const o = labelOrigin(k);
      await drawLabel(doc, o.x, o.y, label);
    }
  }
  doc.end();
  return done;
}
