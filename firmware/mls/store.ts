/**
 * On-disk layout of the hub's MLS state (all writes through DurableFs):
 *
 *   <dir>/hub.json                      hub signing identity, paired phones, invites (commit point of pairing)
 *   <dir>/groups/<phoneId>.<kind>.state epoch u64 BE | ts-mls GroupState (no past epochs)
 *   <dir>/journal/<seq>.rec             the commit journal (JSON, see journal.ts)
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../../hw/os/fs.js';
import { ValidationError, VigilError } from '../../base/errors.js';
import type { ClientState } from 'ts-mls';
import { GROUP_KINDS, type GroupKind, type PinnedCredential } from '../../protocol/mls-profile.js';

export class MlsStateError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'MlsStateError';
  }
}

const b64u = z.string().regex(/^[A-Za-z0-9_-]*$/);

export const PhoneRecord = z.strictObject({
  phoneId: z.string().regex(/^[0-9a-f]{8,64}$/),
  identity: b64u,
  signaturePublicKey: b64u,
  admin: z.boolean(),
  pairedAt: z.number().int().nonnegative(),
  groups: z.record(z.enum(GROUP_KINDS), b64u),
});
export type PhoneRecord = z.infer<typeof PhoneRecord>;

/** A paired phone in the hub's memory: its record, pinned credential and live groups. */
export interface PhoneRuntime {
  rec: PhoneRecord;
  cred: PinnedCredential;
  groups: Map<GroupKind, ClientState>;
  /** Highest epoch per group the phone's heartbeat confirmed. */
  confirmed: Map<GroupKind, bigint>;
}

export const InviteRecord = z.strictObject({
  pskId: b64u,
  psk: b64u,
  expiresAt: z.number().int().nonnegative(),
  by: z.string(),
});
export type InviteRecord = z.infer<typeof InviteRecord>;

export const HubFile = z.strictObject({
  version: z.literal(1),
  deviceId: z.string().min(1).max(64),
  identity: b64u,
  signaturePublicKey: b64u,
  signaturePrivateKey: b64u,
  phones: z.array(PhoneRecord),
  invites: z.array(InviteRecord),
});
export type HubFile = z.infer<typeof HubFile>;

export function encodeStateFile(epoch: bigint, state: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeBigUInt64BE(epoch);
  return Buffer.concat([head, state]);
}

export function decodeStateFile(
  bytes: Uint8Array,
): { epoch: bigint; state: Uint8Array } | undefined {
  if (bytes.length < 9) return undefined;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { epoch: b.readBigUInt64BE(0), state: new Uint8Array(b.subarray(8)) };
}

export class HubStore {
  readonly dir: string;
  readonly fs: DurableFs;
  constructor(dir: string, fs: DurableFs) {
    this.dir = dir;
    this.fs = fs;
  }

  get hubFile(): string {
    return join(this.dir, 'hub.json');
  }
  get groupsDir(): string {
    return join(this.dir, 'groups');
  }
  get journalDir(): string {
    return join(this.dir, 'journal');
  }
  groupFile(phoneId: string, kind: GroupKind): string {
    return join(this.groupsDir, `${phoneId}.${kind}.state`);
  }

  async init(): Promise<void> {
    await this.fs.ensureDir(this.groupsDir);
    await this.fs.ensureDir(this.journalDir);
    await this.fs.cleanTemp(this.dir);
    await this.fs.cleanTemp(this.groupsDir);
    await this.fs.cleanTemp(this.journalDir);
  }

  async readHub(): Promise<HubFile | undefined> {
    const raw = await this.fs.readIfExists(this.hubFile);
    if (raw === undefined) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      throw new MlsStateError('EMLS_STATE_CORRUPT', `${this.hubFile} is not JSON`, { cause: e });
    }
    const r = HubFile.safeParse(json);
    if (!r.success)
      throw new MlsStateError('EMLS_STATE_CORRUPT', `${this.hubFile} is invalid`, {
        cause: new ValidationError(r.error.message),
      });
    return r.data;
  }

  async writeHub(h: HubFile): Promise<void> {
    await this.fs.writeFileAtomic(this.hubFile, JSON.stringify(HubFile.parse(h)), 'mls-hub');
  }

  async readGroup(
    phoneId: string,
    kind: GroupKind,
  ): Promise<{ epoch: bigint; state: Uint8Array } | undefined> {
    const raw = await this.fs.readIfExists(this.groupFile(phoneId, kind));
    if (raw === undefined) return undefined;
    const d = decodeStateFile(raw);
    if (d === undefined)
      throw new MlsStateError(
        'EMLS_STATE_CORRUPT',
        `${this.groupFile(phoneId, kind)} is truncated`,
      );
    return d;
  }

  async writeGroup(
    phoneId: string,
    kind: GroupKind,
    epoch: bigint,
    state: Uint8Array,
  ): Promise<void> {
    await this.fs.writeFileAtomic(
      this.groupFile(phoneId, kind),
      encodeStateFile(epoch, state),
      `mls-group-${kind}`,
    );
  }

  async removeGroup(phoneId: string, kind: GroupKind): Promise<void> {
    await this.fs.remove(this.groupFile(phoneId, kind), `mls-group-${kind}`);
  }

  /** Group files on disk: [phoneId, kind] pairs. */
  async listGroupFiles(): Promise<[string, GroupKind][]> {
    let names: string[];
    try {
      names = await readdir(this.groupsDir);
    } catch {
      return [];
    }
    const out: [string, GroupKind][] = [];
    for (const n of names) {
      const m = /^([0-9a-f]+)\.([a-z]+)\.state$/.exec(n);
      if (m && (GROUP_KINDS as readonly string[]).includes(m[2] ?? ''))
        out.push([m[1] ?? '', m[2] as GroupKind]);
    }
    return out;
  }
}
