/**
 * The scale-out blob backend: ciphertext chunks as objects in an S3-compatible
 * store (AWS S3, MinIO, Ceph RGW) through the official client. Every chunk is
 * its own immutable object, so no append or read-modify-write is ever needed;
 * a PUT that returned is durable by the store's own guarantee.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { VigilError } from '../base/errors.js';
import { checkKey } from './store.js';
import type { BlobStore } from './store.js';

export interface S3BlobStoreOptions {
  readonly bucket: string;
  /** Key prefix inside the bucket (e.g. "vigil/"). */
  readonly prefix?: string;
  /** e.g. http://127.0.0.1:9000 for MinIO; omitted for AWS. */
  readonly endpoint?: string;
  readonly region?: string;
  /** Path-style addressing (MinIO, s3rver, most self-hosted stores). */
  readonly forcePathStyle?: boolean;
  /** Explicit credentials; default: the SDK's chain (AWS_ACCESS_KEY_ID... environment, profiles). */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  readonly client?: S3Client;
}

export class S3BlobStore implements BlobStore {
  readonly name = 's3';
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(opts: S3BlobStoreOptions) {
    const cfg: S3ClientConfig = {
      region: opts.region ?? 'us-east-1',
      forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
      ...(opts.endpoint !== undefined ? { endpoint: opts.endpoint } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    };
    this.#s3 = opts.client ?? new S3Client(cfg);
    this.#bucket = opts.bucket;
    this.#prefix = opts.prefix ?? '';
  }

  #key(key: string): string {
    return `${this.#prefix}${checkKey(key)}`;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const k = this.#key(key);
    try {
      await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: k,
          Body: data,
          ContentLength: data.length,
        }),
      );
    } catch (e) {
      throw new VigilError('ES3', `object store PUT failed: ${(e as Error).message}`, { cause: e });
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    const k = this.#key(key);
    try {
      const r = await this.#s3.send(new GetObjectCommand({ Bucket: this.#bucket, Key: k }));
      if (!r.Body) return Buffer.alloc(0);
      return Buffer.from(await r.Body.transformToByteArray());
    } catch (e) {
      if (e instanceof NoSuchKey || (e as { name?: string }).name === 'NoSuchKey') return undefined;
      throw new VigilError('ES3', `object store GET failed: ${(e as Error).message}`, { cause: e });
    }
  }

  async delete(key: string): Promise<void> {
    const k = this.#key(key);
    try {
      await this.#s3.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: k }));
    } catch (e) {
      throw new VigilError('ES3', `object store DELETE failed: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  destroy(): void {
    this.#s3.destroy();
  }
}
