/**
 * On-disk state of the companion's E2EE (all writes through PhoneFs, the
 * Foundation's DurableFs; the hub side's counterpart is firmware/mls/store.ts):
 *
 *   <dir>/phone.json             identity, hub pin, groups (commit point of pairing)
 *   <dir>/groups/<kind>.state    epoch u64 | n u8 | n x sha256(handshake) | GroupState
 *   <dir>/keys/<itemId>.key      JSON {itemId, group, epoch, cek, complete}
 *   <dir>/refresh/<kind>.kp      pending refresh key package (public + private)
 */
import type { ClientConfig, ClientState } from 'ts-mls';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DesyncReport } from '../../protocol/e2ee-frames.js';
import { VigilError } from '../../base/errors.js';
import {
  GROUP_KINDS,
  decodeState,
  encodeState,
  forgetPastEpochs,
  type GroupKind,
  type MlsProfile,
} from '../../protocol/mls-profile.js';

/** The slice of the Foundation's DurableFs the phone needs (app/ must not import hw/). */
export interface PhoneFs {
  writeFileAtomic(path: string, data: Uint8Array | string, label?: string): Promise<void>;
  remove(path: string, label?: string): Promise<void>;
  ensureDir(dir: string): Promise<void>;
  cleanTemp(dir: string): Promise<number>;
  readIfExists(path: string): Promise<Buffer | undefined>;
}

export type PhoneErrorCode =
  | 'ENOT_PAIRED'
  | 'ENOT_RECIPIENT'
  | 'ESTALE_EPOCH'
  | 'EREPLAYED_COMMIT'
  | 'EEPOCH_GAP'
  | 'EMLS_FORK'
  | 'EMLS_REJECTED'
  | 'EHEADER_TAMPERED'
  | 'EDESYNC'
  | 'EREMOVED'
  | 'EREQUEST_FAILED'
  | 'EMLS_STATE_CORRUPT';

export class PhoneError extends VigilError {
  override readonly code: PhoneErrorCode;
  readonly details: Readonly<Record<string, string>>;
  constructor(
    code: PhoneErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, string> },
  ) {
    super(code, message, options);
    this.name = 'PhoneError';
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** A desync the hub reported or the phone detected: never silent. */
export class DesyncError extends PhoneError {
  readonly reports: readonly DesyncReport[];
  constructor(reports: readonly DesyncReport[]) {
    super(
      'EDESYNC',
      `hub and phone disagree: ${reports.map((r) => `${r.group} (phone ${r.phoneEpoch}, hub ${r.hubEpoch}): ${r.reason}`).join('; ')}`,
    );
    this.name = 'DesyncError';
    this.reports = reports;
  }
}

const b64u = z.string().regex(/^[A-Za-z0-9_-]*$/);
export const PhoneFile = z.strictObject({
  version: z.literal(1),
  phoneId: z.string().regex(/^[0-9a-f]{8,64}$/),
  deviceId: z.string().min(1).max(64),
  identity: b64u,
  signaturePublicKey: b64u,
  signaturePrivateKey: b64u,
  hubSignaturePublicKey: b64u,
  admin: z.boolean(),
  groups: z.record(z.enum(GROUP_KINDS), b64u),
});
export type PhoneFile = z.infer<typeof PhoneFile>;

export const KeyRecord = z.strictObject({
  itemId: z.string().regex(/^[0-9a-f]{32}$/),
  group: z.enum(GROUP_KINDS),
  epoch: z.string().regex(/^[0-9]{1,20}$/),
  cek: b64u,
  complete: z.boolean(),
});
export type KeyRecord = z.infer<typeof KeyRecord>;

export const RefreshRecord = z.strictObject({
  publicPackage: b64u,
  privatePackage: z.strictObject({
    initPrivateKey: b64u,
    hpkePrivateKey: b64u,
    signaturePrivateKey: b64u,
  }),
});
export type RefreshRecord = z.infer<typeof RefreshRecord>;

/** How many applied handshake digests each group remembers (replay detection). */
export const REMEMBERED_HANDSHAKES = 16;

export function encodePhoneState(
  epoch: bigint,
  digests: readonly Uint8Array[],
  state: Uint8Array,
): Buffer {
  const head = Buffer.alloc(9);
  head.writeBigUInt64BE(epoch);
  head[8] = digests.length;
  return Buffer.concat([head, ...digests, state]);
}

export function decodePhoneState(
  bytes: Uint8Array,
): { epoch: bigint; digests: Uint8Array[]; state: Uint8Array } | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 9) return undefined;
  const n = b[8] ?? 0;
  if (b.length < 9 + 32 * n + 1) return undefined;
  const digests: Uint8Array[] = [];
  for (let i = 0; i < n; i++)
    digests.push(new Uint8Array(b.subarray(9 + 32 * i, 9 + 32 * (i + 1))));
  return { epoch: b.readBigUInt64BE(0), digests, state: new Uint8Array(b.subarray(9 + 32 * n)) };
}

/** One group in memory: its state and the last applied handshakes' digests. */
export interface GroupRuntime {
  state: ClientState;
  digests: Uint8Array[];
  /** Keys the last processing used: zeroed only once the result is merged. */
  consumed?: Uint8Array[];
}

export function phonePaths(dir: string): {
  phone: string;
  groups: string;
  keys: string;
  refresh: string;
} {
  return {
    phone: join(dir, 'phone.json'),
    groups: join(dir, 'groups'),
    keys: join(dir, 'keys'),
    refresh: join(dir, 'refresh'),
  };
}

/**
 * Make the state directories and read phone.json. Undefined when not paired;
 * any half-made pairing state (groups without phone.json) is wiped.
 */
export async function readPhoneFile(o: {
  readonly dir: string;
  readonly fs: PhoneFs;
}): Promise<PhoneFile | undefined> {
  const paths = phonePaths(o.dir);
  for (const d of [o.dir, paths.groups, paths.keys, paths.refresh]) {
    await o.fs.ensureDir(d);
    await o.fs.cleanTemp(d);
  }
  const raw = await o.fs.readIfExists(paths.phone);
  if (raw === undefined) {
    for (const kind of GROUP_KINDS)
      await o.fs.remove(join(paths.groups, `${kind}.state`), 'phone-group-wipe');
    return undefined;
  }
  try {
    return PhoneFile.parse(JSON.parse(raw.toString('utf8')));
  } catch (e) {
    throw new PhoneError('EMLS_STATE_CORRUPT', `${paths.phone} is invalid`, { cause: e });
  }
}

/** The files of one paired phone: group states, item keys, pending refreshes. */
export class PhoneStore {
  readonly dir: string;
  readonly fs: PhoneFs;
  readonly p: MlsProfile;

  constructor(dir: string, fs: PhoneFs, p: MlsProfile) {
    this.dir = dir;
    this.fs = fs;
    this.p = p;
  }

  groupFile(kind: GroupKind): string {
    return join(phonePaths(this.dir).groups, `${kind}.state`);
  }
  keyFile(itemId: string): string {
    return join(phonePaths(this.dir).keys, `${itemId}.key`);
  }
  refreshFile(kind: GroupKind): string {
    return join(phonePaths(this.dir).refresh, `${kind}.kp`);
  }

  /** Every group's state, checked against its recorded epoch. */
  async loadGroups(config: ClientConfig): Promise<Map<GroupKind, GroupRuntime>> {
    const groups = new Map<GroupKind, GroupRuntime>();
    for (const kind of GROUP_KINDS) {
      const f = await this.fs.readIfExists(this.groupFile(kind));
      const d = f === undefined ? undefined : decodePhoneState(f);
      const st = d === undefined ? undefined : decodeState(this.p, d.state, config);
      if (d === undefined || st === undefined || st.groupContext.epoch !== d.epoch)
        throw new PhoneError('EMLS_STATE_CORRUPT', `group ${kind} state is missing or corrupt`);
      groups.set(kind, { state: st, digests: d.digests });
    }
    return groups;
  }

  /** Persist a freshly paired phone: groups first, phone.json last (the commit point). */
  async persistPairing(
    info: PhoneFile,
    states: ReadonlyMap<GroupKind, ClientState>,
    config: ClientConfig,
  ): Promise<Map<GroupKind, GroupRuntime>> {
    const paths = phonePaths(this.dir);
    for (const d of [this.dir, paths.groups, paths.keys, paths.refresh]) await this.fs.ensureDir(d);
    for (const kind of GROUP_KINDS) {
      const st = states.get(kind);
      if (st === undefined)
        throw new PhoneError('EMLS_STATE_CORRUPT', `pairing lacks group ${kind}`);
      await this.fs.writeFileAtomic(
        this.groupFile(kind),
        encodePhoneState(st.groupContext.epoch, [], encodeState(this.p, st)),
        `phone-group-${kind}`,
      );
    }
    await this.fs.writeFileAtomic(paths.phone, JSON.stringify(PhoneFile.parse(info)), 'phone-info');
    const groups = new Map<GroupKind, GroupRuntime>();
    for (const [kind, st] of states)
      groups.set(kind, {
        state: { ...forgetPastEpochs(this.p, st), clientConfig: config },
        digests: [],
      });
    return groups;
  }

  async persistGroup(kind: GroupKind, g: GroupRuntime): Promise<void> {
    await this.fs.writeFileAtomic(
      this.groupFile(kind),
      encodePhoneState(g.state.groupContext.epoch, g.digests, encodeState(this.p, g.state)),
      `phone-group-${kind}`,
    );
  }

  async readKey(itemId: string): Promise<KeyRecord | undefined> {
    const raw = await this.fs.readIfExists(this.keyFile(itemId));
    if (raw === undefined) return undefined;
    try {
      return KeyRecord.parse(JSON.parse(raw.toString('utf8')));
    } catch (e) {
      throw new PhoneError('EMLS_STATE_CORRUPT', `key record ${itemId} is corrupt`, { cause: e });
    }
  }

  async writeKey(itemId: string, rec: KeyRecord, label: string): Promise<void> {
    await this.fs.writeFileAtomic(this.keyFile(itemId), JSON.stringify(rec), label);
  }

  async removeKey(itemId: string): Promise<void> {
    await this.fs.remove(this.keyFile(itemId), 'phone-item-forget');
  }

  /** Item ids with a key file (none when the directory is missing). */
  async keyIds(): Promise<string[]> {
    let names: string[] = [];
    try {
      names = await readdir(phonePaths(this.dir).keys);
    } catch {
      /* none */
    }
    return names.filter((x) => x.endsWith('.key')).map((n) => n.slice(0, -4));
  }

  /** The pending refresh key package of a group; throws when it does not parse. */
  async readRefresh(kind: GroupKind): Promise<RefreshRecord | undefined> {
    const raw = await this.fs.readIfExists(this.refreshFile(kind));
    return raw === undefined ? undefined : RefreshRecord.parse(JSON.parse(raw.toString('utf8')));
  }

  async writeRefresh(kind: GroupKind, rec: RefreshRecord): Promise<void> {
    await this.fs.writeFileAtomic(
      this.refreshFile(kind),
      JSON.stringify(rec),
      `phone-refresh-${kind}`,
    );
  }

  async removeRefresh(kind: GroupKind): Promise<void> {
    await this.fs.remove(this.refreshFile(kind), `phone-refresh-${kind}`);
  }
}
