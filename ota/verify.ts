/**
 * The device's TUF client (client workflow of the TUF 1.0 specification, top
 * level roles only). It keeps the trusted metadata in a directory written
 * through DurableFs, so every persisted step is a numbered crash point, and
 * takes its reference time from an injected clock (the Pi has no RTC; the
 * agent passes max(system clock, last verified time)).
 *
 * Attacks refused, and where:
 *  - arbitrary software: signatures by a threshold of the role's keys (root
 *    pins the keys), target length + SHA-256/512 (download.ts);
 *  - rollback: versions never go down (root, timestamp, snapshot, each
 *    targets entry of the snapshot);
 *  - freeze: expiry of every role against the reference time;
 *  - mix-and-match: snapshot version = timestamp's record, targets version =
 *    snapshot's record, plus lengths and hashes where recorded;
 *  - endless data: every fetch has a maximum length (transport.ts);
 *  - fast-forward recovery: a root that rotates timestamp/snapshot keys drops
 *    the old version floors for those roles (spec 5.3.11).
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import { EnvelopeSchema, firstIssue, metadataFileName, SCHEMAS } from './metadata.js';
import type { MetaFile, RoleName, Root, Snapshot, Targets, Timestamp } from './metadata.js';
import { meetsThreshold } from './signatures.js';
import type { Transport } from './transport.js';

export type VerifyFailure =
  | 'signature'
  | 'expired'
  | 'rollback'
  | 'mix-and-match'
  | 'length'
  | 'hash'
  | 'format'
  | 'fetch'
  | 'no-trusted-root';

export class VerifyError extends VigilError {
  readonly failure: VerifyFailure;
  constructor(failure: VerifyFailure, message: string, options?: { cause?: unknown }) {
    super(`EOTA_${failure.toUpperCase().replace(/-/g, '_')}`, message, options);
    this.name = 'VerifyError';
    this.failure = failure;
  }
}

export const LIMITS = {
  rootMaxLength: 512 * 1024,
  timestampMaxLength: 16 * 1024,
  snapshotMaxLength: 2 * 1024 * 1024,
  targetsMaxLength: 5 * 1024 * 1024,
  maxRootRotations: 32,
} as const;

interface Loaded<T> {
  readonly signed: T;
  readonly bytes: Buffer;
}

type SignedOf<R extends RoleName> = R extends 'root'
  ? Root
  : R extends 'timestamp'
    ? Timestamp
    : R extends 'snapshot'
      ? Snapshot
      : Targets;

/** Parse an envelope and check its signatures against `root`'s keys for `role`. */
function parseSigned<R extends RoleName>(
  bytes: Buffer,
  role: R,
  root: Root,
  what: string,
): SignedOf<R> {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new VerifyError('format', `${what}: not JSON`, { cause: e });
  }
  const env = EnvelopeSchema.safeParse(raw);
  if (!env.success)
    throw new VerifyError(
      'format',
      `${what}: not a signed TUF envelope (${firstIssue(env.error)})`,
    );
  if (env.data.signed._type !== role)
    throw new VerifyError('format', `${what}: is ${env.data.signed._type}, expected ${role}`);
  // Signatures first, over the raw signed object: nothing else is read from unsigned data.
  const rawSigned = (raw as { signed: unknown }).signed;
  if (!meetsThreshold(rawSigned, env.data.signatures, root.keys, root.roles[role])) {
    throw new VerifyError(
      'signature',
      `${what}: not signed by ${String(root.roles[role].threshold)} trusted ${role} key(s)`,
    );
  }
  const parsed = SCHEMAS[role].safeParse(env.data.signed);
  if (!parsed.success) {
    throw new VerifyError(
      'format',
      `${what}: invalid ${role} metadata (${firstIssue(parsed.error)})`,
    );
  }
  return parsed.data as SignedOf<R>;
}

function checkLengthAndHashes(bytes: Buffer, meta: MetaFile, what: string): void {
  if (meta.length !== undefined && bytes.length !== meta.length) {
    throw new VerifyError(
      'length',
      `${what}: ${String(bytes.length)} bytes, expected ${String(meta.length)}`,
    );
  }
  for (const [alg, want] of Object.entries(meta.hashes ?? {})) {
    if (alg !== 'sha256' && alg !== 'sha512') continue;
    const got = createHash(alg).update(bytes).digest('hex');
    if (got !== want)
      throw new VerifyError('hash', `${what}: ${alg} mismatch (mix-and-match or tampering)`);
  }
}

function isExpired(expires: string, now: Date): boolean {
  return now.getTime() >= new Date(expires).getTime();
}

function sameKeys(a: Root, b: Root, role: RoleName): boolean {
  const x = [...a.roles[role].keyids].sort().join(',');
  const y = [...b.roles[role].keyids].sort().join(',');
  return x === y && a.roles[role].threshold === b.roles[role].threshold;
}

export interface TrustedMetadata {
  readonly root: Root;
  readonly timestamp: Timestamp;
  readonly snapshot: Snapshot;
  readonly targets: Targets;
}

export interface TufClientOptions {
  /** Directory of the trusted metadata (root.json must be there: the provisioned root). */
  readonly dir: string;
  readonly fs: DurableFs;
  readonly transport: Transport;
  /** Base URL of the metadata directory, e.g. https://relay/ota/metadata */
  readonly metadataUrl: string;
  readonly now: () => Date;
  readonly signal?: AbortSignal;
}

/** Install the provisioned root (first boot / image build). */
export async function installTrustedRoot(
  fs: DurableFs,
  dir: string,
  rootBytes: Buffer,
): Promise<Root> {
  let raw: unknown;
  try {
    raw = JSON.parse(rootBytes.toString('utf8'));
  } catch (e) {
    throw new VerifyError('format', 'root.json: not JSON', { cause: e });
  }
  const env = EnvelopeSchema.safeParse(raw);
  if (!env.success)
    throw new VerifyError(
      'format',
      `root.json: not a signed TUF envelope (${firstIssue(env.error)})`,
    );
  const root = SCHEMAS.root.safeParse(env.data.signed);
  if (!root.success)
    throw new VerifyError('format', `root.json: not TUF root metadata (${firstIssue(root.error)})`);
  parseSigned(rootBytes, 'root', root.data, 'root.json');
  await fs.writeFileAtomic(join(dir, 'root.json'), rootBytes, 'ota-meta-root');
  return root.data;
}

export class TufClient {
  readonly #o: TufClientOptions;

  constructor(opts: TufClientOptions) {
    this.#o = opts;
  }

  #url(name: string): string {
    return `${this.#o.metadataUrl.replace(/\/+$/, '')}/${name}`;
  }

  async #local(role: RoleName): Promise<Buffer | undefined> {
    return this.#o.fs.readIfExists(join(this.#o.dir, `${role}.json`));
  }

  async #persist(role: RoleName, bytes: Buffer): Promise<void> {
    await this.#o.fs.writeFileAtomic(join(this.#o.dir, `${role}.json`), bytes, `ota-meta-${role}`);
  }

  async #fetch(name: string, maxLength: number): Promise<Buffer | undefined> {
    try {
      return await this.#o.transport.getBytes(this.#url(name), maxLength, this.#o.signal);
    } catch (e) {
      if ((e as { code?: string }).code === 'EOTA_TOO_LONG')
        throw new VerifyError('length', `${name}: ${(e as Error).message}`, { cause: e });
      throw new VerifyError('fetch', `${name}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The trusted root as stored (self-signed check). */
  async trustedRoot(): Promise<Loaded<Root>> {
    const bytes = await this.#local('root');
    if (bytes === undefined)
      throw new VerifyError('no-trusted-root', `no trusted root.json in ${this.#o.dir}`);
    let raw: unknown;
    try {
      raw = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      throw new VerifyError('format', 'trusted root.json is not JSON', { cause: e });
    }
    const env = EnvelopeSchema.safeParse(raw);
    if (!env.success)
      throw new VerifyError(
        'format',
        `trusted root.json is not a signed TUF envelope (${firstIssue(env.error)})`,
      );
    const parsed = SCHEMAS.root.safeParse(env.data.signed);
    if (!parsed.success)
      throw new VerifyError(
        'format',
        `trusted root.json is not root metadata (${firstIssue(parsed.error)})`,
      );
    return { signed: parseSigned(bytes, 'root', parsed.data, 'trusted root.json'), bytes };
  }

  /** A locally stored role verified by `root`, or undefined when absent/invalid. */
  async #localVerified<R extends 'timestamp' | 'snapshot' | 'targets'>(
    role: R,
    root: Root,
  ): Promise<SignedOf<R> | undefined> {
    const bytes = await this.#local(role);
    if (bytes === undefined) return undefined;
    try {
      return parseSigned(bytes, role, root, `trusted ${role}.json`);
    } catch {
      return undefined; // a stale copy signed by rotated-out keys carries no floor (spec 5.3.11)
    }
  }

  /** Run the client workflow; returns the fresh, verified top-level metadata. */
  async refresh(): Promise<TrustedMetadata> {
    const now = this.#o.now();
    // 5.3 root: walk N+1, N+2... each signed by the old and the new root.
    let root = (await this.trustedRoot()).signed;
    for (let i = 0; i < LIMITS.maxRootRotations; i++) {
      const next = root.version + 1;
      const name = metadataFileName('root', next);
      const bytes = await this.#fetch(name, LIMITS.rootMaxLength);
      if (bytes === undefined) break;
      parseSigned(bytes, 'root', root, name); // by the trusted root
      const candidate = JSON.parse(bytes.toString('utf8')) as { signed: unknown };
      const parsed = SCHEMAS.root.safeParse(candidate.signed);
      if (!parsed.success) throw new VerifyError('format', `${name}: invalid root metadata`);
      const newRoot = parseSigned(bytes, 'root', parsed.data, name); // by itself
      if (newRoot.version !== next)
        throw new VerifyError('rollback', `${name} claims version ${String(newRoot.version)}`);
      const rotatedTs = !sameKeys(root, newRoot, 'timestamp');
      const rotatedSnap = !sameKeys(root, newRoot, 'snapshot');
      await this.#persist('root', bytes);
      if (rotatedTs || rotatedSnap) {
        await this.#o.fs.remove(join(this.#o.dir, 'timestamp.json'), 'ota-meta-timestamp');
        await this.#o.fs.remove(join(this.#o.dir, 'snapshot.json'), 'ota-meta-snapshot');
      }
      root = newRoot;
    }
    if (isExpired(root.expires, now))
      throw new VerifyError(
        'expired',
        `root metadata expired at ${root.expires} (freeze attack or stale repository)`,
      );

    // 5.4 timestamp
    const oldTs = await this.#localVerified('timestamp', root);
    const tsBytes = await this.#fetch('timestamp.json', LIMITS.timestampMaxLength);
    if (tsBytes === undefined) throw new VerifyError('fetch', 'timestamp.json: not found');
    const ts = parseSigned(tsBytes, 'timestamp', root, 'timestamp.json');
    let timestamp = ts;
    if (oldTs !== undefined) {
      if (ts.version < oldTs.version) {
        throw new VerifyError(
          'rollback',
          `timestamp version ${String(ts.version)} is older than the trusted ${String(oldTs.version)}`,
        );
      }
      if (ts.meta['snapshot.json'].version < oldTs.meta['snapshot.json'].version) {
        throw new VerifyError(
          'rollback',
          'timestamp points at an older snapshot than the trusted one',
        );
      }
      if (ts.version === oldTs.version) timestamp = oldTs;
    }
    if (isExpired(timestamp.expires, now))
      throw new VerifyError('expired', `timestamp expired at ${timestamp.expires} (freeze attack)`);
    if (timestamp !== oldTs) await this.#persist('timestamp', tsBytes);

    // 5.5 snapshot
    const snapMeta = timestamp.meta['snapshot.json'];
    const oldSnap = await this.#localVerified('snapshot', root);
    let snapshot: Snapshot;
    if (oldSnap?.version === snapMeta.version) {
      snapshot = oldSnap;
    } else {
      const name = root.consistent_snapshot
        ? metadataFileName('snapshot', snapMeta.version)
        : 'snapshot.json';
      const bytes = await this.#fetch(name, snapMeta.length ?? LIMITS.snapshotMaxLength);
      if (bytes === undefined) throw new VerifyError('fetch', `${name}: not found`);
      checkLengthAndHashes(bytes, snapMeta, name);
      snapshot = parseSigned(bytes, 'snapshot', root, name);
      if (snapshot.version !== snapMeta.version) {
        throw new VerifyError(
          'mix-and-match',
          `${name} is version ${String(snapshot.version)}, the timestamp names ${String(snapMeta.version)}`,
        );
      }
      if (oldSnap !== undefined) {
        for (const [file, m] of Object.entries(oldSnap.meta)) {
          const now2 = snapshot.meta[file];
          if (now2 === undefined) throw new VerifyError('rollback', `snapshot dropped ${file}`);
          if (now2.version < m.version)
            throw new VerifyError(
              'rollback',
              `snapshot rolls ${file} back to version ${String(now2.version)}`,
            );
        }
      }
      if (isExpired(snapshot.expires, now))
        throw new VerifyError('expired', `snapshot expired at ${snapshot.expires} (freeze attack)`);
      await this.#persist('snapshot', bytes);
    }
    if (isExpired(snapshot.expires, now))
      throw new VerifyError('expired', `snapshot expired at ${snapshot.expires} (freeze attack)`);

    // 5.6 targets
    const tMeta = snapshot.meta['targets.json'];
    if (tMeta === undefined) throw new VerifyError('format', 'snapshot lists no targets.json');
    const oldTargets = await this.#localVerified('targets', root);
    let targets: Targets;
    if (oldTargets?.version === tMeta.version) {
      targets = oldTargets;
    } else {
      const name = root.consistent_snapshot
        ? metadataFileName('targets', tMeta.version)
        : 'targets.json';
      const bytes = await this.#fetch(name, tMeta.length ?? LIMITS.targetsMaxLength);
      if (bytes === undefined) throw new VerifyError('fetch', `${name}: not found`);
      checkLengthAndHashes(bytes, tMeta, name);
      targets = parseSigned(bytes, 'targets', root, name);
      if (targets.version !== tMeta.version) {
        throw new VerifyError(
          'mix-and-match',
          `${name} is version ${String(targets.version)}, the snapshot names ${String(tMeta.version)}`,
        );
      }
      if (isExpired(targets.expires, now))
        throw new VerifyError('expired', `targets expired at ${targets.expires} (freeze attack)`);
      await this.#persist('targets', bytes);
    }
    if (isExpired(targets.expires, now))
      throw new VerifyError('expired', `targets expired at ${targets.expires} (freeze attack)`);
    return { root, timestamp, snapshot, targets };
  }
}
