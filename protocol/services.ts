/**
 * Where a device finds its services: the relay (and the enrollment token its
 * operator may require) and the OTA repository and channel. Pure: the schemas
 * are shared by the factory (provisioning bundle), the pairing message that
 * lets a phone override the relay, and the hub that resolves what it uses.
 *
 * URL rule (docs/pairing.md, "Services"): `https:`, or `http:` only to a
 * loopback or link-local address (a relay on the same host or the same link,
 * for development). No user name or password in the URL, no fragment.
 */
import { isIP } from 'node:net';
import { z } from 'zod';

/** Longest service URL accepted (the bundle file is capped at 4 KiB). */
export const SERVICE_URL_MAX = 512;
export const ENROLL_TOKEN_MAX = 256;
export const DEFAULT_OTA_CHANNEL = 'stable';

function isLoopbackOrLinkLocal(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const v = isIP(host);
  if (v === 4) {
    const [a, b] = host.split('.').map(Number);
    return a === 127 || (a === 169 && b === 254);
  }
  if (v === 6) {
    if (host === '::1') return true;
    const first = Number.parseInt(host.split(':')[0] ?? '', 16);
    return Number.isInteger(first) && (first & 0xffc0) === 0xfe80;
  }
  return false;
}

/** Why `raw` is not an acceptable service URL, or undefined when it is. */
export function serviceUrlProblem(raw: string): string | undefined {
  if (raw.length > SERVICE_URL_MAX) return `must be at most ${SERVICE_URL_MAX} characters`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return 'is not a URL';
  }
  if (u.username !== '' || u.password !== '') return 'must not carry a user name or password';
  if (u.hash !== '') return 'must not have a #fragment';
  if (u.protocol === 'https:') return undefined;
  if (u.protocol === 'http:') {
    return isLoopbackOrLinkLocal(u.hostname)
      ? undefined
      : 'must be https (http only to a loopback or link-local address, for development)';
  }
  return `must be https, not ${u.protocol.replace(/:$/, '')}`;
}

/** A service URL (trailing slashes removed, so `https://r/` and `https://r` are one relay). */
export const ServiceUrlSchema = z
  .string()
  .superRefine((s, ctx) => {
    const problem = serviceUrlProblem(s);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  })
  .transform((s) => s.replace(/\/+$/, ''));

export const EnrollTokenSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(ENROLL_TOKEN_MAX, `must be at most ${ENROLL_TOKEN_MAX} characters`)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const OtaChannelSchema = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be 1-32 of a-z 0-9 - (starting with a letter)');

export const RelayServiceSchema = z.strictObject({
  url: ServiceUrlSchema,
  enrollToken: EnrollTokenSchema.optional(),
});
export type RelayService = z.infer<typeof RelayServiceSchema>;

export const OtaServiceSchema = z.strictObject({
  repositoryUrl: ServiceUrlSchema,
  channel: OtaChannelSchema,
});
export type OtaService = z.infer<typeof OtaServiceSchema>;

/** The name of the trust-root file in a provisioning bundle directory (moved into the volume). */
export const OTA_ROOT_FILE = 'ota-root.json';

/** A first, format-only look at a TUF root: the OTA agent verifies it properly. */
export function otaRootProblem(bytes: Uint8Array): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'is not JSON';
  }
  const signed = (json as { signed?: { _type?: unknown } | null } | null)?.signed;
  if (typeof signed !== 'object' || signed === null || signed._type !== 'root')
    return 'is not TUF root metadata (no signed._type "root")';
  return undefined;
}
