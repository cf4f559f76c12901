import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MemoryLogger } from '../../base/logger.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { startRelay } from '../../relay/server.js';
import type { RelayOptions, RunningRelay } from '../../relay/server.js';

export async function tempDir(
  prefix = 'vigil-relay-',
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface Party {
  client: RelayClient;
  id: string;
  token: string;
}

/** A relay with one device and `phones` phones paired through the rendezvous. */
export async function relayWith(
  dataDir: string,
  phones: number,
  extra: Partial<RelayOptions> = {},
  deviceId = `dev-${randomBytes(4).toString('hex')}`,
): Promise<{ relay: RunningRelay; logger: MemoryLogger; device: Party; phones: Party[] }> {
  const logger = new MemoryLogger('relay');
  const relay = await startRelay({ dataDir, logger, ...extra });
  const anon = new RelayClient({ url: relay.url });
  const cred = await anon.registerDevice(deviceId, extra.enrollToken);
  const device = { client: anon.withToken(cred.token), id: deviceId, token: cred.token };
  const ps: Party[] = [];
  for (let i = 0; i < phones; i++) ps.push(await pairPhone(relay, device));
  return { relay, logger, device, phones: ps };
}

export async function pairPhone(relay: RunningRelay, device: Party): Promise<Party> {
  const token = randomBytes(18).toString('base64url');
  await device.client.offerRendezvous(token);
  const c = await new RelayClient({ url: relay.url }).claimRendezvous(token);
  return { client: new RelayClient({ url: relay.url, token: c.token }), id: c.id, token: c.token };
}

/** Raw HTTP request returning status and parsed body (for malformed-request tests). */
export async function raw(
  url: string,
  method: string,
  path: string,
  init: { token?: string; body?: string | Uint8Array; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
  const res = await fetch(`${url}${path}`, {
    method,
    headers,
    ...(init.body !== undefined ? { body: init.body as BodyInit } : {}),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* bytes */
  }
  return { status: res.status, body };
}
