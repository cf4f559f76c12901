/**
 * A factory batch: N device identities with their provisioning bundles, QR
 * labels (PNG, SVG, one PDF sheet) and a manifest (JSON and CSV).
 *
 *   <out>/manifest.json   batch id, label spec, one entry per device (no secrets)
 *   <out>/manifest.csv    the same rows for spreadsheets / label printers
 *   <out>/labels.pdf      every label, 63 per A4 page
 *   <out>/labels/<ID>.png, <ID>.svg
 *   <out>/bundles/<ID>/device.json   (mode 0600, directory 0700: holds the secret)
 *
 * The batch is built in a private sibling directory and renamed into place only
 * when complete, so an interrupted run never leaves a half batch at <out>, and
 * an existing <out> is never touched.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { constants as FS } from 'node:fs';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import { writeBundle } from './bundle.js';
import { BatchIdSchema } from '../protocol/provisioning-bundle.js';
import { cryptoRandom, deriveIdentity, formatDeviceId, newIdentity } from '../protocol/identity.js';
import type { RandomSource } from '../protocol/identity.js';
import {
  LABEL_SPEC,
  qrMatrix,
  renderLabelPng,
  renderLabelSheetPdf,
  renderLabelSvg,
} from './label.js';
import type { LabelInput } from './label.js';
import { encodeQrPayload } from '../protocol/qr-payload.js';
import { OTA_ROOT_FILE } from '../protocol/services.js';
import type { OtaService, RelayService } from '../protocol/services.js';

export const MAX_BATCH = 10_000;
export const MANIFEST_FORMAT = 'vigil-batch-manifest';

export class BatchError extends VigilError {
  constructor(
    code: 'EBATCH_EXISTS' | 'EBATCH_INPUT' | 'EBATCH_DUPLICATE',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'BatchError';
  }
}

export interface ManifestDevice {
  readonly deviceId: string;
  readonly displayId: string;
  readonly ssid: string;
  readonly bundle: string;
  readonly labelPng: string;
  readonly labelSvg: string;
  /** SHA-256 of the bundle file, so the image step can check it copied the right one. */
  readonly bundleSha256: string;
  /** The relay written into the bundle (null: none, the hub's config file decides). */
  readonly relay: string | null;
  /** The OTA channel and repository written into the bundle (null: none). */
  readonly otaChannel: string | null;
  readonly otaRepository: string | null;
}

/** Services written into every bundle of the batch (docs/pairing.md, "Services"). */
export interface BatchServices {
  readonly relay?: RelayService;
  readonly ota?: OtaService;
  /** The OTA trust root (TUF root.json), copied into each bundle as ota-root.json. */
  readonly otaRoot?: Uint8Array;
}

export interface BatchManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: 1;
  readonly batchId: string;
  readonly createdAt: string;
  readonly count: number;
  readonly label: typeof LABEL_SPEC & { readonly qrVersion: number; readonly sheetFile: string };
  readonly devices: readonly ManifestDevice[];
}

export interface ProvisionOptions {
  readonly count: number;
  readonly outDir: string;
  readonly fs: DurableFs;
  readonly batchId?: string;
  readonly random?: RandomSource;
  readonly now?: () => Date;
  readonly services?: BatchServices;
  /** Called after each device with (done, total). */
  readonly onProgress?: (done: number, total: number) => void;
}

export function defaultBatchId(now: Date, random: RandomSource = cryptoRandom): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${Buffer.from(random(3)).toString('hex')}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, FS.O_RDONLY | FS.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function csvField(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function manifestCsv(m: BatchManifest): string {
  const head = [
    'device_id',
    'display_id',
    'ssid',
    'bundle',
    'bundle_sha256',
    'label_png',
    'label_svg',
    'batch_id',
    'relay_url',
    'ota_channel',
    'ota_repository',
  ];
  const rows = m.devices.map((d) => [
    d.deviceId,
    d.displayId,
    d.ssid,
    d.bundle,
    d.bundleSha256,
    d.labelPng,
    d.labelSvg,
    m.batchId,
    d.relay ?? '',
    d.otaChannel ?? '',
    d.otaRepository ?? '',
  ]);
  return [head, ...rows].map((r) => r.map(csvField).join(',')).join('\n') + '\n';
}

/**
 * Create `dir` and its missing parents one level at a time. Not `mkdir -p`:
 * node's recursive mkdir loops forever under /proc (mkdir says ENOENT there for
 * a parent that stat also calls missing), so `--out /proc/x/y` would hang.
 */
async function makeParents(dir: string): Promise<void> {
  const missing: string[] = [];
  let d = dir;
  while (!(await exists(d))) {
    missing.unshift(d);
    const up = dirname(d);
    if (up === d) break;
    d = up;
  }
  for (const m of missing) {
    try {
      await mkdir(m);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'EEXIST') continue;
      throw new BatchError('EBATCH_INPUT', `cannot create ${m} (${code}); choose another --out`, {
        cause: e,
      });
    }
  }
}

export async function provisionBatch(opts: ProvisionOptions): Promise<BatchManifest> {
  const { count, fs } = opts;
  if (!Number.isInteger(count) || count < 1 || count > MAX_BATCH) {
    throw new BatchError('EBATCH_INPUT', `count must be an integer from 1 to ${MAX_BATCH}`);
  }
  const random = opts.random ?? cryptoRandom;
  const now = (opts.now ?? (() => new Date()))();
  const batchId = opts.batchId ?? defaultBatchId(now, random);
  if (!BatchIdSchema.safeParse(batchId).success) {
    throw new BatchError(
      'EBATCH_INPUT',
      'batch id must be 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)',
    );
  }
  const out = resolve(opts.outDir);
  if (await exists(out)) {
    throw new BatchError(
      'EBATCH_EXISTS',
      `${out} already exists; refusing to overwrite a batch (choose a new --out)`,
    );
  }
  await makeParents(dirname(out));
  const staging = join(dirname(out), `.${basename(out)}.partial-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    const createdAt = now.toISOString();
    const devices: ManifestDevice[] = [];
    const labels: LabelInput[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < count; i++) {
      const id = newIdentity(random);
      if (seen.has(id.deviceId))
        throw new BatchError('EBATCH_DUPLICATE', 'random source produced a duplicate device id');
      seen.add(id.deviceId);
      const payload = encodeQrPayload(id);
      const { ssid } = deriveIdentity(id.secret, id.deviceId);
      const bundleRel = `bundles/${id.deviceId}`;
      const services = opts.services ?? {};
      const bundlePath = await writeBundle(fs, join(staging, bundleRel), {
        ...id,
        batchId,
        createdAt,
        ...(services.relay ? { relay: services.relay } : {}),
        ...(services.ota ? { ota: services.ota } : {}),
      });
      if (services.otaRoot !== undefined)
        await fs.writeFileAtomic(
          join(staging, bundleRel, OTA_ROOT_FILE),
          services.otaRoot,
          'bundle-ota-root',
        );
      const bundleBytes = await fs.readIfExists(bundlePath);
      const png = `labels/${id.deviceId}.png`;
      const svg = `labels/${id.deviceId}.svg`;
      const label: LabelInput = { payload, deviceId: id.deviceId, ssid };
      await fs.writeFileAtomic(join(staging, png), await renderLabelPng(payload), 'label-png');
      await fs.writeFileAtomic(join(staging, svg), await renderLabelSvg(label), 'label-svg');
      labels.push(label);
      devices.push({
        deviceId: id.deviceId,
        displayId: formatDeviceId(id.deviceId),
        ssid,
        bundle: bundleRel,
        labelPng: png,
        labelSvg: svg,
        bundleSha256: createHash('sha256')
          .update(bundleBytes ?? '')
          .digest('hex'),
        relay: services.relay?.url ?? null,
        otaChannel: services.ota?.channel ?? null,
        otaRepository: services.ota?.repositoryUrl ?? null,
      });
      opts.onProgress?.(i + 1, count);
    }
    const first = labels[0];
    const manifest: BatchManifest = {
      format: MANIFEST_FORMAT,
      version: 1,
      batchId,
      createdAt,
      count,
      label: {
        ...LABEL_SPEC,
        qrVersion: first ? qrMatrix(first.payload).version : 0,
        sheetFile: 'labels.pdf',
      },
      devices,
    };
    await fs.writeFileAtomic(
      join(staging, 'labels.pdf'),
      await renderLabelSheetPdf(labels, {
        title: `Vigil labels ${batchId}`,
        batchId,
        createdAt: now,
      }),
      'labels-pdf',
    );
    await fs.writeFileAtomic(
      join(staging, 'manifest.json'),
      JSON.stringify(manifest, null, 2) + '\n',
      'manifest-json',
    );
    await fs.writeFileAtomic(join(staging, 'manifest.csv'), manifestCsv(manifest), 'manifest-csv');
    if (await exists(out)) {
      throw new BatchError(
        'EBATCH_EXISTS',
        `${out} appeared while the batch was being made; refusing to overwrite it`,
      );
    }
    await rename(staging, out);
    await fsyncDir(dirname(out));
    return manifest;
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
}
