/**
 * The per-device provisioning bundle: what the factory hands to the image step
 * (`vigil image provision` copies the bundle directory into the image's
 * provisioning partition, /boot/vigil-provisioning/), and what the hub reads on
 * first boot before the storage layer moves it into the LUKS volume and
 * overwrites the plaintext copy.
 *
 * Layout (docs/pairing.md): a directory holding one file
 *
 *   device.json   {"format":"vigil-provisioning-bundle","version":1,
 *                  "deviceId":"<16 base32>","secret":"<52 base32>",
 *                  "batchId":"<batch id>","createdAt":"<ISO 8601>",
 *                  "relay":{"url":"https://…","enrollToken":"…"},      (optional)
 *                  "ota":{"repositoryUrl":"https://…","channel":"stable"}} (optional)
 *   ota-root.json  the OTA trust root (optional; not secret, moved with the rest)
 *
 * written with mode 0600. `relay` and `ota` came later in version 1: they are
 * optional, so a bundle without them still parses (the hub then takes its
 * services from the config file only). Nothing derived is stored: the hotspot passphrase and
 * the MLS PSK come from `deriveIdentity(secret, deviceId)`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { VigilError } from '../base/errors.js';
import { base32Decode, base32Encode } from './base32.js';
import { DEVICE_ID_CHARS, SECRET_BYTES } from './identity.js';
import type { DeviceIdentity } from './identity.js';
import { OtaServiceSchema, RelayServiceSchema } from './services.js';
import type { OtaService, RelayService } from './services.js';

export const BUNDLE_FILE = 'device.json';
export const BUNDLE_FORMAT = 'vigil-provisioning-bundle';
export const BUNDLE_VERSION = 1;
/** A bundle file is tiny; anything bigger is not one. */
export const BUNDLE_MAX_BYTES = 4096;

export class BundleError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EBUNDLE', message, options);
    this.name = 'BundleError';
  }
}

export interface ProvisioningBundle extends DeviceIdentity {
  readonly batchId: string;
  readonly createdAt: string;
  /** The relay this device meets its phones at (factory `--relay`). */
  readonly relay?: RelayService;
  /** The OTA repository and channel (factory `--ota-repo`, `--ota-channel`). */
  readonly ota?: OtaService;
}

export const BatchIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'batch id: 1-64 of A-Z a-z 0-9 . _ -');

/** The on-disk JSON (strict: unknown fields are an error, so a format change is never silently half-read). */
export const BundleFileSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  version: z.literal(BUNDLE_VERSION),
  deviceId: z
    .string()
    .regex(new RegExp(`^[A-Z2-7]{${DEVICE_ID_CHARS}}$`), 'deviceId: 16 base32 characters'),
  secret: z
    .string()
    .refine(
      (s) => base32Decode(s)?.length === SECRET_BYTES,
      `secret: base32 encoding of ${SECRET_BYTES} bytes`,
    ),
  batchId: BatchIdSchema,
  createdAt: z.iso.datetime(),
  relay: RelayServiceSchema.optional(),
  ota: OtaServiceSchema.optional(),
});

/** The file schema, decoding the secret to bytes. */
export const ProvisioningBundleSchema = BundleFileSchema.transform((f): ProvisioningBundle => ({
  deviceId: f.deviceId,
  secret: base32Decode(f.secret) ?? new Uint8Array(),
  batchId: f.batchId,
  createdAt: f.createdAt,
  ...(f.relay !== undefined ? { relay: f.relay } : {}),
  ...(f.ota !== undefined ? { ota: f.ota } : {}),
}));

export function encodeBundle(b: ProvisioningBundle): string {
  const file: z.input<typeof BundleFileSchema> = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    deviceId: b.deviceId,
    secret: base32Encode(b.secret),
    batchId: b.batchId,
    createdAt: b.createdAt,
    ...(b.relay !== undefined ? { relay: b.relay } : {}),
    ...(b.ota !== undefined ? { ota: b.ota } : {}),
  };
  // validate what we write with the same schema we read with
  BundleFileSchema.parse(file);
  return JSON.stringify(file, null, 2) + '\n';
}

/** Parse bundle bytes; throws BundleError naming the first bad field (never echoing the secret). */
export function parseBundle(data: Uint8Array | string): ProvisioningBundle {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
  if (Buffer.byteLength(text) > BUNDLE_MAX_BYTES)
    throw new BundleError(`bundle is larger than ${BUNDLE_MAX_BYTES} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new BundleError('bundle is not valid JSON', { cause: e });
  }
  const r = ProvisioningBundleSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.join('.') ?? '';
    throw new BundleError(
      `invalid provisioning bundle${where ? ` (${where})` : ''}: ${issue?.message ?? 'unknown'}`,
    );
  }
  return r.data;
}

/** Read `<dir>/device.json`; undefined when the directory holds no bundle. */
export async function readBundle(dir: string): Promise<ProvisioningBundle | undefined> {
  let data: Buffer;
  try {
    data = await readFile(join(dir, BUNDLE_FILE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BundleError(`cannot read provisioning bundle in ${dir}`, { cause: e });
  }
  return parseBundle(data);
}
