/**
 * The release side: a TUF 1.0 repository on disk (consistent snapshots,
 * ed25519, one key per role by default, configurable root threshold).
 *
 *   <repo>/metadata/<v>.root.json, root.json, <v>.targets.json,
 *                   <v>.snapshot.json, timestamp.json
 *   <repo>/targets/<channel>/<sha256>.vigil-<kind>-<version>.tar.gz
 *
 * Keys live in a separate keys directory (never inside the repository, which
 * is what gets published). The repository state is read back from its own
 * metadata each time: there is no second source of truth.
 *
 * Publication order makes every intermediate state consistent for clients:
 * target files first, then targets, snapshot, and timestamp.json last.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { Logger } from '../base/logger.js';
import { SILENT } from '../base/logger.js';
import {
  encodeKeyFile,
  generateSigningKey,
  isSealed,
  KeyError,
  openKeyFile,
  parseKeyFile,
  DEFAULT_SCRYPT_LOG_N,
} from './keys.js';
import type { SigningKey } from './keys.js';
import {
  addDays,
  EnvelopeSchema,
  metadataFileName,
  ONLINE_ROLES,
  ROLES,
  SCHEMAS,
  SPEC_VERSION,
  tufDate,
} from './metadata.js';
import type {
  Envelope,
  RoleName,
  Root,
  Snapshot,
  Targets,
  Timestamp,
  TufKey,
  VigilTargetCustom,
} from './metadata.js';
import { encodeEnvelope, meetsThreshold, signEnvelope } from './signatures.js';

export class RepoError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTAREPO', message, options);
    this.name = 'RepoError';
  }
}

/** Default lifetimes (days). The timestamp must be re-signed daily (`vigil ota refresh`). */
export const DEFAULT_EXPIRY_DAYS: Readonly<Record<RoleName, number>> = {
  root: 365,
  targets: 90,
  snapshot: 30,
  timestamp: 1,
};

export interface RepoContext {
  readonly repoDir: string;
  readonly keysDir: string;
  readonly fs: DurableFs;
  readonly now?: () => Date;
  /** Unlocks sealed keys (the root key) and seals new ones. */
  readonly passphrase?: Buffer;
  readonly scryptLogN?: number;
  readonly expiryDays?: Partial<Record<RoleName, number>>;
  readonly logger?: Logger;
}

export interface RepoState {
  readonly root: Envelope<Root>;
  readonly targets: Envelope<Targets>;
  readonly snapshot: Envelope<Snapshot>;
  readonly timestamp: Envelope<Timestamp>;
}

const metaDir = (ctx: RepoContext): string => join(ctx.repoDir, 'metadata');
const targetsDir = (ctx: RepoContext): string => join(ctx.repoDir, 'targets');
const nowOf = (ctx: RepoContext): Date => (ctx.now ?? (() => new Date()))();
const expiryOf = (ctx: RepoContext, role: RoleName): string =>
  tufDate(addDays(nowOf(ctx), ctx.expiryDays?.[role] ?? DEFAULT_EXPIRY_DAYS[role]));

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..');
}

async function realOrResolved(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    return resolve(p);
  }
}

/** The keys directory must never be (or be inside) the published repository. */
export async function assertKeysOutsideRepo(repoDir: string, keysDir: string): Promise<void> {
  const r = await realOrResolved(repoDir);
  const k = await realOrResolved(keysDir);
  if (isInside(k, r) || isInside(r, k)) {
    throw new RepoError(
      `the keys directory (${keysDir}) must not be inside the repository (${repoDir}) or contain it: the repository is published`,
    );
  }
}

async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

// ---- reading -----------------------------------------------------------------

async function readEnvelope(
  path: string,
  role: RoleName,
): Promise<Envelope<Root | Targets | Snapshot | Timestamp>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new RepoError(`cannot read ${path}`, { cause: e });
  }
  const env = EnvelopeSchema.safeParse(raw);
  if (!env.success) throw new RepoError(`${path} is not TUF metadata`);
  const signed = SCHEMAS[role].safeParse(env.data.signed);
  if (!signed.success)
    throw new RepoError(
      `${path}: invalid ${role} metadata (${signed.error.issues[0]?.message ?? ''})`,
    );
  return { signatures: env.data.signatures, signed: signed.data };
}

export async function loadRepo(ctx: RepoContext): Promise<RepoState> {
  const dir = metaDir(ctx);
  const root = (await readEnvelope(join(dir, 'root.json'), 'root')) as Envelope<Root>;
  const timestamp = (await readEnvelope(
    join(dir, 'timestamp.json'),
    'timestamp',
  )) as Envelope<Timestamp>;
  const snapV = timestamp.signed.meta['snapshot.json'].version;
  const snapshot = (await readEnvelope(
    join(dir, metadataFileName('snapshot', snapV)),
    'snapshot',
  )) as Envelope<Snapshot>;
  const tMeta = snapshot.signed.meta['targets.json'];
  if (tMeta === undefined) throw new RepoError('snapshot lists no targets.json');
  const targets = (await readEnvelope(
    join(dir, metadataFileName('targets', tMeta.version)),
    'targets',
  )) as Envelope<Targets>;
  return { root, targets, snapshot, timestamp };
}

// ---- keys ----------------------------------------------------------------------

async function saveKey(ctx: RepoContext, key: SigningKey): Promise<string> {
  await ensurePrivateDir(ctx.keysDir);
  const seal = key.role === 'root' ? ctx.passphrase : undefined;
  const path = join(ctx.keysDir, `${key.role}-${key.keyid.slice(0, 16)}.json`);
  await ctx.fs.writeFileAtomic(
    path,
    encodeKeyFile(key, seal, ctx.scryptLogN ?? DEFAULT_SCRYPT_LOG_N),
    `key-${key.role}`,
  );
  await chmod(path, 0o600);
  return path;
}

/** Open every key file in the keys dir whose key id is authorised for `role` in `root`. */
async function keysFor(ctx: RepoContext, root: Root, role: RoleName): Promise<SigningKey[]> {
  const wanted = new Set(root.roles[role].keyids);
  let names: string[];
  try {
    names = await readdir(ctx.keysDir);
  } catch (e) {
    throw new RepoError(`cannot read the keys directory ${ctx.keysDir}`, { cause: e });
  }
  const out: SigningKey[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const path = join(ctx.keysDir, name);
    const file = parseKeyFile(await readFile(path, 'utf8'), path);
    if (file.role !== role || !wanted.has(file.keyid)) continue;
    if (isSealed(file) && ctx.passphrase === undefined) {
      throw new KeyError(
        `the ${role} key ${file.keyid.slice(0, 16)} is sealed: give its passphrase (--passphrase-file or --passphrase-stdin)`,
      );
    }
    out.push(openKeyFile(file, path, ctx.passphrase));
  }
  if (out.length < root.roles[role].threshold) {
    throw new RepoError(
      `only ${out.length} of the ${root.roles[role].threshold} ${role} key(s) needed are in ${ctx.keysDir}`,
    );
  }
  return out;
}

async function retireKeys(ctx: RepoContext, keyids: readonly string[]): Promise<void> {
  const retired = join(ctx.keysDir, 'retired');
  await ensurePrivateDir(retired);
  for (const name of (await readdir(ctx.keysDir)).sort()) {
    if (!name.endsWith('.json')) continue;
    const path = join(ctx.keysDir, name);
    if ((await stat(path)).isDirectory()) continue;
    const text = await readFile(path, 'utf8');
    const file = parseKeyFile(text, path);
    if (!keyids.includes(file.keyid)) continue;
    await ctx.fs.writeFileAtomic(join(retired, name), text, 'key-retire');
    await chmod(join(retired, name), 0o600);
    await ctx.fs.remove(path, 'key-retire');
  }
}

// ---- writing metadata ----------------------------------------------------------

async function writeMeta(ctx: RepoContext, name: string, env: Envelope<unknown>): Promise<void> {
  await ctx.fs.writeFileAtomic(join(metaDir(ctx), name), encodeEnvelope(env), `repo-${name}`);
}

function metaFileOf(
  env: Envelope<unknown>,
  v: number,
): { version: number; length: number; hashes: { sha256: string } } {
  const bytes = Buffer.from(encodeEnvelope(env));
  return {
    version: v,
    length: bytes.length,
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
  };
}

/** Re-sign snapshot (new version, pointing at `targetsEnv`) and timestamp. */
async function publishSnapshotAndTimestamp(
  ctx: RepoContext,
  root: Root,
  targetsEnv: Envelope<Targets>,
  prev: { snapshot?: Snapshot; timestamp?: Timestamp },
): Promise<{ snapshot: Envelope<Snapshot>; timestamp: Envelope<Timestamp> }> {
  const snapV = (prev.snapshot?.version ?? 0) + 1;
  const snapshot: Snapshot = {
    _type: 'snapshot',
    spec_version: SPEC_VERSION,
    version: snapV,
    expires: expiryOf(ctx, 'snapshot'),
    meta: { 'targets.json': metaFileOf(targetsEnv, targetsEnv.signed.version) },
  };
  const snapEnv = signEnvelope(snapshot, await keysFor(ctx, root, 'snapshot'));
  await writeMeta(ctx, metadataFileName('snapshot', snapV), snapEnv);
  const timestamp: Timestamp = {
    _type: 'timestamp',
    spec_version: SPEC_VERSION,
    version: (prev.timestamp?.version ?? 0) + 1,
    expires: expiryOf(ctx, 'timestamp'),
    meta: { 'snapshot.json': metaFileOf(snapEnv, snapV) },
  };
  const tsEnv = signEnvelope(timestamp, await keysFor(ctx, root, 'timestamp'));
  await writeMeta(ctx, 'timestamp.json', tsEnv);
  return { snapshot: snapEnv, timestamp: tsEnv };
}

async function publishTargets(
  ctx: RepoContext,
  root: Root,
  targets: Targets,
): Promise<Envelope<Targets>> {
  const env = signEnvelope(targets, await keysFor(ctx, root, 'targets'));
  await writeMeta(ctx, metadataFileName('targets', targets.version), env);
  return env;
}

async function publishRoot(
  ctx: RepoContext,
  root: Root,
  signers: readonly SigningKey[],
): Promise<Envelope<Root>> {
  const env = signEnvelope(root, signers);
  await writeMeta(ctx, metadataFileName('root', root.version), env);
  await writeMeta(ctx, 'root.json', env);
  return env;
}

// ---- commands ------------------------------------------------------------------

export interface InitOptions {
  readonly rootKeys?: number;
  readonly rootThreshold?: number;
}

export interface InitResult {
  readonly rootPath: string;
  readonly keyFiles: readonly string[];
  readonly rootKeyIds: readonly string[];
}

/** Create keys and version 1 of every role (an empty targets list). */
export async function initRepo(ctx: RepoContext, opts: InitOptions = {}): Promise<InitResult> {
  await assertKeysOutsideRepo(ctx.repoDir, ctx.keysDir);
  const log = (ctx.logger ?? SILENT).child('ota-repo');
  const rootN = opts.rootKeys ?? 1;
  const rootT = opts.rootThreshold ?? rootN;
  if (!Number.isInteger(rootN) || rootN < 1 || rootN > 16)
    throw new RepoError('--root-keys must be 1..16');
  if (!Number.isInteger(rootT) || rootT < 1 || rootT > rootN)
    throw new RepoError('--root-threshold must be 1..root keys');
  try {
    await stat(join(metaDir(ctx), 'root.json'));
    throw new RepoError(`${ctx.repoDir} already holds a repository (metadata/root.json exists)`);
  } catch (e) {
    if (e instanceof RepoError) throw e;
  }
  const byRole: Record<RoleName, SigningKey[]> = {
    root: [],
    targets: [],
    snapshot: [],
    timestamp: [],
  };
  for (let i = 0; i < rootN; i++) byRole.root.push(generateSigningKey('root'));
  for (const r of ONLINE_ROLES) byRole[r].push(generateSigningKey(r));
  const keyFiles: string[] = [];
  for (const r of ROLES) for (const k of byRole[r]) keyFiles.push(await saveKey(ctx, k));
  const keys: Record<string, TufKey> = {};
  for (const r of ROLES) for (const k of byRole[r]) keys[k.keyid] = k.public;
  const roleKeys = (r: RoleName, threshold: number): { keyids: string[]; threshold: number } => ({
    keyids: byRole[r].map((k) => k.keyid),
    threshold,
  });
  const root: Root = {
    _type: 'root',
    spec_version: SPEC_VERSION,
    version: 1,
    expires: expiryOf(ctx, 'root'),
    consistent_snapshot: true,
    keys,
    roles: {
      root: roleKeys('root', rootT),
      targets: roleKeys('targets', 1),
      snapshot: roleKeys('snapshot', 1),
      timestamp: roleKeys('timestamp', 1),
    },
  };
  await ctx.fs.ensureDir(targetsDir(ctx));
  await publishRoot(ctx, root, byRole.root);
  const targets: Targets = {
    _type: 'targets',
    spec_version: SPEC_VERSION,
    version: 1,
    expires: expiryOf(ctx, 'targets'),
    targets: {},
  };
  const tEnv = await publishTargets(ctx, root, targets);
  await publishSnapshotAndTimestamp(ctx, root, tEnv, {});
  log.info('repository created', { repo: ctx.repoDir, rootKeys: rootN, rootThreshold: rootT });
  return {
    rootPath: join(metaDir(ctx), '1.root.json'),
    keyFiles,
    rootKeyIds: byRole.root.map((k) => k.keyid),
  };
}

export interface ReleaseInput {
  readonly bundle: Buffer;
  readonly channel: string;
  readonly version: string;
  readonly kind: VigilTargetCustom['kind'];
}

export interface ReleaseResult {
  readonly targetPath: string;
  readonly length: number;
  readonly sha256: string;
  readonly targetsVersion: number;
  readonly snapshotVersion: number;
  readonly timestampVersion: number;
}

export function targetNameFor(input: Pick<ReleaseInput, 'channel' | 'version' | 'kind'>): string {
  // OS bundles are RAUC bundles (ota/rauc-bundle.ts); app bundles tarballs (ota/bundle.ts)
  const ext = input.kind === 'rootfs' ? 'raucb' : 'tar.gz';
  return `${input.channel}/vigil-${input.kind}-${input.version}.${ext}`;
}

/** Add a bundle as a target and publish new targets, snapshot and timestamp. */
export async function release(ctx: RepoContext, input: ReleaseInput): Promise<ReleaseResult> {
  await assertKeysOutsideRepo(ctx.repoDir, ctx.keysDir);
  const state = await loadRepo(ctx);
  const name = targetNameFor(input);
  if (state.targets.signed.targets[name] !== undefined) {
    throw new RepoError(
      `${name} is already released; versions are immutable, release a new version`,
    );
  }
  const sha256 = createHash('sha256').update(input.bundle).digest('hex');
  const sha512 = createHash('sha512').update(input.bundle).digest('hex');
  const [channel, file] = name.split('/') as [string, string];
  await ctx.fs.writeFileAtomic(
    join(targetsDir(ctx), channel, `${sha256}.${file}`),
    input.bundle,
    'repo-target',
  );
  const targets: Targets = {
    ...state.targets.signed,
    version: state.targets.signed.version + 1,
    expires: expiryOf(ctx, 'targets'),
    targets: {
      ...state.targets.signed.targets,
      [name]: {
        length: input.bundle.length,
        hashes: { sha256, sha512 },
        custom: { vigil: { version: input.version, channel: input.channel, kind: input.kind } },
      },
    },
  };
  const tEnv = await publishTargets(ctx, state.root.signed, targets);
  const { snapshot, timestamp } = await publishSnapshotAndTimestamp(ctx, state.root.signed, tEnv, {
    snapshot: state.snapshot.signed,
    timestamp: state.timestamp.signed,
  });
  (ctx.logger ?? SILENT)
    .child('ota-repo')
    .info('released', { target: name, length: input.bundle.length, sha256 });
  return {
    targetPath: name,
    length: input.bundle.length,
    sha256,
    targetsVersion: targets.version,
    snapshotVersion: snapshot.signed.version,
    timestampVersion: timestamp.signed.version,
  };
}

/**
 * Re-sign the timestamp (always) and, when they expire within `withinDays`,
 * snapshot and targets too. Run it daily from cron on the release host.
 */
export async function refresh(
  ctx: RepoContext,
  opts: { withinDays?: number; force?: readonly RoleName[] } = {},
): Promise<RoleName[]> {
  const state = await loadRepo(ctx);
  const soon = addDays(nowOf(ctx), opts.withinDays ?? 7);
  const due = (role: 'targets' | 'snapshot'): boolean =>
    (opts.force ?? []).includes(role) || new Date(state[role].signed.expires) <= soon;
  const done: RoleName[] = [];
  let tEnv = state.targets;
  if (due('targets')) {
    tEnv = await publishTargets(ctx, state.root.signed, {
      ...state.targets.signed,
      version: state.targets.signed.version + 1,
      expires: expiryOf(ctx, 'targets'),
    });
    done.push('targets');
  }
  if (done.includes('targets') || due('snapshot')) {
    await publishSnapshotAndTimestamp(ctx, state.root.signed, tEnv, {
      snapshot: state.snapshot.signed,
      timestamp: state.timestamp.signed,
    });
    done.push('snapshot', 'timestamp');
  } else {
    const timestamp: Timestamp = {
      ...state.timestamp.signed,
      version: state.timestamp.signed.version + 1,
      expires: expiryOf(ctx, 'timestamp'),
    };
    await writeMeta(
      ctx,
      'timestamp.json',
      signEnvelope(timestamp, await keysFor(ctx, state.root.signed, 'timestamp')),
    );
    done.push('timestamp');
  }
  return done;
}

/**
 * Rotate the keys of the given roles: new keys, a new root version signed by
 * the old root keys (threshold) and the new ones, then targets, snapshot and
 * timestamp re-signed with their current keys. Old keys move to keys/retired/.
 */
export async function rotateKeys(
  ctx: RepoContext,
  roles: readonly RoleName[],
): Promise<{ rootVersion: number; retired: string[] }> {
  await assertKeysOutsideRepo(ctx.repoDir, ctx.keysDir);
  if (roles.length === 0) throw new RepoError('name at least one role to rotate');
  const state = await loadRepo(ctx);
  const old = state.root.signed;
  const oldRootKeys = await keysFor(ctx, old, 'root');
  let keys: Record<string, TufKey> = { ...old.keys };
  const newRoles = { ...old.roles };
  const retired: string[] = [];
  const fresh: SigningKey[] = [];
  for (const role of roles) {
    const count = old.roles[role].keyids.length;
    const made = Array.from({ length: count }, () => generateSigningKey(role));
    fresh.push(...made);
    const dropped = new Set(old.roles[role].keyids);
    keys = Object.fromEntries(Object.entries(keys).filter(([id]) => !dropped.has(id)));
    retired.push(...dropped);
    for (const k of made) keys[k.keyid] = k.public;
    newRoles[role] = { ...old.roles[role], keyids: made.map((k) => k.keyid) };
  }
  // A key id still used by another role stays in `keys`.
  for (const r of ROLES)
    for (const id of newRoles[r].keyids)
      if (keys[id] === undefined && old.keys[id]) keys[id] = old.keys[id];
  for (const k of fresh) await saveKey(ctx, k);
  const root: Root = {
    ...old,
    version: old.version + 1,
    expires: expiryOf(ctx, 'root'),
    keys,
    roles: newRoles,
  };
  const newRootKeys = roles.includes('root') ? fresh.filter((k) => k.role === 'root') : oldRootKeys;
  const env = signEnvelope(root, [...oldRootKeys, ...newRootKeys]);
  if (
    !meetsThreshold(env.signed, env.signatures, old.keys, old.roles.root) ||
    !meetsThreshold(env.signed, env.signatures, root.keys, root.roles.root)
  ) {
    throw new RepoError('the new root does not meet both the old and the new root threshold');
  }
  await writeMeta(ctx, metadataFileName('root', root.version), env);
  await writeMeta(ctx, 'root.json', env);
  const tEnv = await publishTargets(ctx, root, {
    ...state.targets.signed,
    version: state.targets.signed.version + 1,
    expires: expiryOf(ctx, 'targets'),
  });
  await publishSnapshotAndTimestamp(ctx, root, tEnv, {
    snapshot: state.snapshot.signed,
    timestamp: state.timestamp.signed,
  });
  await retireKeys(ctx, retired);
  (ctx.logger ?? SILENT)
    .child('ota-repo')
    .info('keys rotated', { roles: roles.join(','), rootVersion: root.version });
  return { rootVersion: root.version, retired };
}

/** The published file of a target (hash-prefixed, consistent snapshot). */
export function targetFilePath(repoDir: string, targetName: string, sha256: string): string {
  const file = basename(targetName);
  const dir = targetName.slice(0, targetName.length - file.length);
  return join(repoDir, 'targets', dir, `${sha256}.${file}`);
}
