import t from 'tap';
import type { Test } from 'tap';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../hw/os/run.js';
import { deriveIdentity, formatDeviceId, newIdentity } from '../../protocol/identity.js';
import { encodeQrPayload } from '../../protocol/qr-payload.js';
import {
  LABEL_SPEC,
  LABEL_TEXT,
  MM,
  idLines,
  labelOrigin,
  labelsPerPage,
  qrMatrix,
  renderLabelPng,
  renderLabelSheetPdf,
  renderLabelSvg,
} from '../../provisioning/label.js';
import type { LabelInput } from '../../provisioning/label.js';
import { zbarDecode } from './zbar.js';

const make = (k: number): LabelInput[] =>
  Array.from({ length: k }, () => {
    const id = newIdentity();
    return {
      payload: encodeQrPayload(id),
      deviceId: id.deviceId,
      ssid: deriveIdentity(id.secret, id.deviceId).ssid,
    };
  });

async function tempDir(t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

void t.test('PNG labels (qrcode renderer) decode with zbarimg to the exact payload', async (t) => {
  const dir = await tempDir(t, 'vigil-label-');
  const labels = make(5);
  const files: string[] = [];
  for (const [i, l] of labels.entries()) {
    const f = join(dir, `${i}.png`);
    await writeFile(f, await renderLabelPng(l.payload));
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
  t.equal(png.readUInt32BE(16), (33 + 8) * LABEL_SPEC.pngPxPerModule, '10 px per module');
});

void t.test('matrix: version 4 at M; the id lines', async (t) => {
  const [l] = make(1);
  const m = qrMatrix(l!.payload);
  t.equal(m.version, 4);
  t.equal(m.size, 33);
  t.same(idLines('ABCDEFGHIJKLMNOP'), ['ABCD-EFGH', 'IJKL-MNOP']);
  t.equal(LABEL_SPEC.errorCorrection, 'M');
  t.ok(MM > 2.8 && MM < 2.9);
});

void t.test('SVG label: sized in mm, the code nested, every line of text', async (t) => {
  const [l] = make(1);
  const svg = await renderLabelSvg(l!);
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="40mm" height="46mm"/);
  t.match(svg, /<svg x="8" y="5\.8" width="24" height="24" viewBox="0 0 41 41"/, 'the code');
  for (const line of [
    'Vigil',
    LABEL_TEXT.scan,
    'Keep private \u2014 this code',
    'pairs the camera',
    `Hotspot ${l!.ssid}`,
    `ID ${formatDeviceId(l!.deviceId)}`,
  ])
    t.ok(svg.includes(`>${line}</text>`), line);
  t.equal(await renderLabelSvg(l!), svg, 'deterministic');
});

/** Render every page of a PDF to PNG at `dpi` (poppler), file names in page order. */
async function pages(pdf: string, dir: string, dpi: number): Promise<string[]> {
  await run('pdftoppm', ['-r', String(dpi), '-gray', '-png', pdf, join(dir, 'page')], {
    timeoutMs: 120_000,
  });
  return (await readdir(dir))
    .filter((f) => f.startsWith('page') && f.endsWith('.png'))
    .sort()
    .map((f) => join(dir, f));
}

void t.test(
  'PDF sheet: header page, labels that decode with zbarimg, text pdftotext reads, same bytes twice',
  async (t) => {
    const dir = await tempDir(t, 'vigil-sheet-');
    const { cols, rows } = labelsPerPage();
    t.equal(cols * rows, 24);
    const labels = make(cols * rows + 2); // two pages of labels
    const info = {
      title: 'Vigil test sheet',
      batchId: 'test-batch',
      createdAt: new Date(Date.UTC(2026, 5, 1)),
    };
    const pdf = await renderLabelSheetPdf(labels, info);
    t.same(await renderLabelSheetPdf(labels, info), pdf, 'byte-identical across runs');
    const file = join(dir, 'sheet.pdf');
    await writeFile(file, pdf);
    const meta = (await run('pdfinfo', [file])).stdout.toString();
    t.match(meta, /Pages:\s+3/, 'header + two pages of labels');
    t.match(meta, /Page size:\s+595\.\d+ x 841\.\d+ pts \(A4\)/);
    t.match(meta, /Title:\s+Vigil test sheet/);

    // text: the header page, then every label's lines
    const text = async (page: number): Promise<string> =>
      (
        await run('pdftotext', ['-f', String(page), '-l', String(page), file, '-'])
      ).stdout.toString();
    const header = await text(1);
    t.match(header, /Vigil camera labels/);
    t.match(header, /Batch test-batch/);
    t.match(header, /Created 2026-06-01T00:00:00\.000Z/);
    t.match(header, /26 label\(s\) on 2 page\(s\)/);
    t.match(header, /Keep these sheets private/);
    t.ok(header.includes(formatDeviceId(labels[0]!.deviceId)), 'ids listed on the header');
    const body = (await text(2)) + (await text(3));
    const count = (s: string): number => body.split(s).length - 1;
    t.equal(count(LABEL_TEXT.scan), labels.length, 'every label says how to pair');
    t.equal(count('Keep private \u2014 this code'), labels.length, 'every label says keep private');
    t.equal(count('pairs the camera'), labels.length);
    t.equal(
      body.match(/(?<![\w-])Vigil(?![\w-]| app)/g)?.length,
      labels.length,
      'every label names the product',
    );
    for (const l of labels) {
      t.ok(body.includes(`Hotspot ${l.ssid}`), `hotspot ${l.ssid}`);
      t.ok(body.includes(`ID ${formatDeviceId(l.deviceId)}`), `id ${l.deviceId}`);
    }

    // the codes: each label cut out of its page at 200 dpi (poppler's crop), decoded by zbarimg
    const dpi = 200;
    const px = (mm: number): number => Math.round((mm * dpi) / 25.4);
    const crops: string[] = [];
    for (const [k] of labels.entries()) {
      const page = 2 + Math.floor(k / (cols * rows));
      const o = labelOrigin(k % (cols * rows));
      const out = join(dir, `label-${String(k).padStart(2, '0')}`);
      await run('pdftoppm', [
        ...['-r', String(dpi), '-gray', '-png', '-singlefile'],
        ...['-f', String(page), '-l', String(page)],
        ...['-x', String(px(o.x)), '-y', String(px(o.y))],
        ...['-W', String(px(LABEL_SPEC.labelWidthMm)), '-H', String(px(LABEL_SPEC.labelHeightMm))],
        file,
        out,
      ]);
      crops.push(`${out}.png`);
    }
    t.same(
      await zbarDecode(crops),
      labels.map((l) => l.payload),
      'all 26 labels on the rendered sheet decode to their payloads',
    );
    const [headerImage] = await pages(file, dir, 100);
    const headerCodes = await run(
      'zbarimg',
      ['-q', '--raw', '-Sdisable', '-Sqrcode.enable', headerImage!],
      { okExitCodes: [0, 4] },
    );
    t.equal(headerCodes.stdout.toString(), '', 'no code on the header page');
  },
);
