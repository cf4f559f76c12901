/**
 * ed25519 keys for TUF roles: generation, key ids, signing, verification and
 * the on-disk key files of the release side.
 *
 * Key files live in a keys directory that is never inside the repository (the
 * repository is what gets published). The root key is the offline key: it can
 * be sealed with a passphrase (scrypt + AES-256-GCM) and belongs on removable
 * media; the online keys (targets, snapshot, timestamp) sign unattended.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  scryptSync,
  sign as edSign,
  verify as edVerify,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { VigilError } from '../base/errors.js';
import { canonicalBytes } from './canonical-json.js';
import { KeySchema } from './metadata.js';
import type { RoleName, TufKey } from './metadata.js';

export class KeyError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTAKEY', message, options);
    this.name = 'KeyError';
  }
}

/** A private signing key in memory, with its public TUF form. */
export interface SigningKey {
  readonly keyid: string;
  readonly role: RoleName;
  readonly public: TufKey;
  readonly privateKey: KeyObject;
}

/** The TUF key id: SHA-256 of the canonical JSON of the public key object. */
export function keyIdOf(key: TufKey): string {
  return createHash('sha256').update(canonicalBytes(key)).digest('hex');
}

function publicHexOf(pub: KeyObject): string {
  const jwk = pub.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new KeyError('not an ed25519 public key');
  return Buffer.from(jwk.x, 'base64url').toString('hex');
}

export function tufKeyOf(publicKey: KeyObject): TufKey {
  return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: publicHexOf(publicKey) } };
}

export function generateSigningKey(role: RoleName): SigningKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = tufKeyOf(publicKey);
  return { keyid: keyIdOf(pub), role, public: pub, privateKey };
}

export function signBytes(key: SigningKey, data: Uint8Array): string {
  return edSign(null, data, key.privateKey).toString('hex');
}

/** Verify an ed25519 signature (hex) by a TUF public key. Never throws for bad input. */
export function verifyBytes(key: TufKey, data: Uint8Array, sigHex: string): boolean {
  try {
    const pub = createPublicKey({
      key: {
        kty: 'OKP',
        crv: 'Ed25519',
        x: Buffer.from(key.keyval.public, 'hex').toString('base64url'),
      },
      format: 'jwk',
    });
    const sig = Buffer.from(sigHex, 'hex');
    if (sig.length !== 64) return false;
    return edVerify(null, data, pub, sig);
  } catch {
    return false;
  }
}

// ---- key files ----------------------------------------------------------------

/** scrypt cost for sealing the root key: N=2^17, r=8 (128 MiB, ~0.5 s here). */
export const DEFAULT_SCRYPT_LOG_N = 17;

const SealedSchema = z.object({
  kdf: z.literal('scrypt'),
  logN: z.number().int().min(10).max(22),
  r: z.number().int().min(1).max(32),
  p: z.number().int().min(1).max(16),
  salt: z.string(),
  cipher: z.literal('aes-256-gcm'),
  iv: z.string(),
  tag: z.string(),
  data: z.string(),
});

export const KeyFileSchema = z.object({
  format: z.literal('vigil-tuf-key/1'),
  role: z.enum(['root', 'targets', 'snapshot', 'timestamp']),
  keyid: z.string().regex(/^[0-9a-f]{64}$/),
  public: KeySchema,
  /** PKCS#8 DER, base64: either in the clear or sealed with a passphrase. */
  private: z.union([z.object({ pkcs8: z.string() }), z.object({ sealed: SealedSchema })]),
});
export type KeyFile = z.infer<typeof KeyFileSchema>;

function deriveKey(passphrase: Buffer, salt: Buffer, logN: number, r: number, p: number): Buffer {
  const N = 2 ** logN;
  return scryptSync(passphrase, salt, 32, { N, r, p, maxmem: 256 * N * r + 16 * 1024 * 1024 });
}

/** Serialise a key; with a passphrase the private part is sealed. */
export function encodeKeyFile(
  key: SigningKey,
  passphrase?: Buffer,
  scryptLogN = DEFAULT_SCRYPT_LOG_N,
): string {
  const der = key.privateKey.export({ format: 'der', type: 'pkcs8' });
  let priv: KeyFile['private'];
  if (passphrase === undefined) {
    priv = { pkcs8: der.toString('base64') };
  } else {
    if (passphrase.length < 8) throw new KeyError('a key passphrase must be at least 8 bytes long');
    const salt = randomBytes(16);
    const iv = randomBytes(12);
    const r = 8;
    const p = 1;
    const k = deriveKey(passphrase, salt, scryptLogN, r, p);
    const c = createCipheriv('aes-256-gcm', k, iv);
    c.setAAD(Buffer.from(key.keyid));
    const data = Buffer.concat([c.update(der), c.final()]);
    k.fill(0);
    priv = {
      sealed: {
        kdf: 'scrypt',
        logN: scryptLogN,
        r,
        p,
        salt: salt.toString('base64'),
        cipher: 'aes-256-gcm',
        iv: iv.toString('base64'),
        tag: c.getAuthTag().toString('base64'),
        data: data.toString('base64'),
      },
    };
  }
  der.fill(0);
  const file: KeyFile = {
    format: 'vigil-tuf-key/1',
    role: key.role,
    keyid: key.keyid,
    public: key.public,
    private: priv,
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

export function isSealed(file: KeyFile): boolean {
  return 'sealed' in file.private;
}

export function parseKeyFile(text: string, where: string): KeyFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new KeyError(`${where}: not JSON`, { cause: e });
  }
  const r = KeyFileSchema.safeParse(raw);
  if (!r.success)
    throw new KeyError(
      `${where}: not a Vigil TUF key file (${r.error.issues[0]?.message ?? 'invalid'})`,
    );
  if (keyIdOf(r.data.public) !== r.data.keyid)
    throw new KeyError(`${where}: key id does not match the public key`);
  return r.data;
}

/** Open a key file into a signing key. Sealed keys need the passphrase. */
export function openKeyFile(file: KeyFile, where: string, passphrase?: Buffer): SigningKey {
  let der: Buffer;
  if ('pkcs8' in file.private) {
    der = Buffer.from(file.private.pkcs8, 'base64');
  } else {
    if (passphrase === undefined)
      throw new KeyError(`${where}: the ${file.role} key is sealed; a passphrase is needed`);
    const s = file.private.sealed;
    const k = deriveKey(passphrase, Buffer.from(s.salt, 'base64'), s.logN, s.r, s.p);
    try {
      const d = createDecipheriv('aes-256-gcm', k, Buffer.from(s.iv, 'base64'));
      d.setAAD(Buffer.from(file.keyid));
      d.setAuthTag(Buffer.from(s.tag, 'base64'));
      der = Buffer.concat([d.update(Buffer.from(s.data, 'base64')), d.final()]);
    } catch (e) {
      throw new KeyError(`${where}: wrong passphrase for the ${file.role} key`, { cause: e });
    } finally {
      k.fill(0);
    }
  }
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  der.fill(0);
  const pub = tufKeyOf(createPublicKey(privateKey));
  if (keyIdOf(pub) !== file.keyid)
    throw new KeyError(`${where}: private key does not match its public key`);
  return { keyid: file.keyid, role: file.role, public: pub, privateKey };
}
