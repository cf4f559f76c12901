/**
 * The invite a second phone pairs with (`vigil app phones add` prints it on an
 * admin phone; `vigil app pair --invite` reads it). The text is
 *
 *   {"invite":{"t":"invite","requestId":…,"deviceId":…,"pskId":…,"psk":…,"expiresAt":…,
 *              "hotspot":{"ssid":…,"passphrase":…}}}
 *
 * `hotspot` is added by the admin's companion when it paired from the QR label
 * (it kept the hotspot's SSID and WPA2 passphrase, never the label secret), so
 * the new phone can reach the pairing frame server; the MLS PSK of the invite
 * is what lets it pair, once, within 15 minutes.
 */
import { chmod, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { VigilError } from '../../base/errors.js';
import type { DurableFs } from '../../hw/os/fs.js';
import { InviteMessage } from '../../protocol/e2ee-frames.js';
import type { ExternalPsk } from '../../protocol/mls-profile.js';

/** Where a phone paired from the label keeps the hotspot it used (0600). */
export const HOTSPOT_FILE = 'hotspot.json';

const Hotspot = z.strictObject({
  ssid: z.string().min(1).max(32),
  passphrase: z.string().min(8).max(63),
});
export type Hotspot = z.infer<typeof Hotspot>;

const InviteText = z.strictObject({
  invite: InviteMessage.extend({ hotspot: Hotspot.optional() }),
});

export interface ParsedInvite {
  readonly deviceId: string;
  readonly psk: ExternalPsk;
  readonly expiresAt: number;
  readonly hotspot?: Hotspot;
}

export class InviteError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EINVITE', message, options);
    this.name = 'InviteError';
  }
}

/** Parse the printed invite; errors name the field and never echo the PSK. */
export function parseInvite(text: string, nowMs: number = Date.now()): ParsedInvite {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InviteError('the invite is not the JSON `vigil app phones add` printed', {
      cause: e,
    });
  }
  const r = InviteText.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InviteError(
      `invalid invite (${issue?.path.join('.') ?? ''}): ${issue?.message ?? 'unknown'}`,
    );
  }
  const inv = r.data.invite;
  if (inv.expiresAt <= nowMs)
    throw new InviteError(
      `the invite expired at ${new Date(inv.expiresAt).toISOString()}: ask for a new one (vigil app phones add)`,
    );
  return {
    deviceId: inv.deviceId,
    psk: { id: Buffer.from(inv.pskId, 'base64url'), secret: Buffer.from(inv.psk, 'base64url') },
    expiresAt: inv.expiresAt,
    ...(inv.hotspot ? { hotspot: inv.hotspot } : {}),
  };
}

/** `--invite VALUE`: the JSON itself, or a file holding it. */
export async function readInviteArg(value: string): Promise<string> {
  const isFile = await stat(value).then(
    (st) => st.isFile(),
    () => false,
  );
  return isFile ? readFile(value, 'utf8') : value;
}

export async function saveHotspot(fs: DurableFs, dir: string, h: Hotspot): Promise<void> {
  const path = join(dir, HOTSPOT_FILE);
  await fs.writeFileAtomic(path, JSON.stringify(h) + '\n', 'hotspot');
  await chmod(path, 0o600);
}

export async function loadHotspot(fs: DurableFs, dir: string): Promise<Hotspot | undefined> {
  const raw = await fs.readIfExists(join(dir, HOTSPOT_FILE));
  if (raw === undefined) return undefined;
  const r = Hotspot.safeParse(JSON.parse(raw.toString('utf8')));
  return r.success ? r.data : undefined;
}
