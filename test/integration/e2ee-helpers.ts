/**
 * Shared wiring for the E2EE tests: a hub and phones in temp dirs, an
 * in-memory ciphertext sink, and an in-memory pairing transport that carries
 * frames through encodeFrame/decodeFrame (as the TCP frame server will).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CrashController } from '../../hw/os/fs.js';
import { DurableFs } from '../../hw/os/fs.js';
import type { CiphertextSink, ItemKind } from '../../firmware/items.js';
import { MlsHub } from '../../firmware/mls/hub.js';
import { PairingResponder } from '../../firmware/mls/pairing-responder.js';
import { MlsItemSealer } from '../../firmware/mls/sealer.js';
import { PairingInitiator } from '../../app/e2ee/pairing-initiator.js';
import type { E2eePhone } from '../../app/e2ee/phone.js';
import { decodeFrame, encodeFrame, type PairingFrame } from '../../protocol/e2ee-frames.js';
import type { ExternalPsk, MlsProfile } from '../../protocol/mls-profile.js';
import { loadMlsProfile } from '../../protocol/mls-profile.js';
import { devPairRelay, e2eeDir, saveAccount } from '../../app/account.js';

export const DEVICE_ID = 'dev-00112233445566';

export class MemorySink implements CiphertextSink {
  readonly items = new Map<string, { kind: ItemKind; parts: Buffer[]; final: boolean }>();
  readonly order: string[] = [];
  append(itemId: string, kind: ItemKind, bytes: Uint8Array, final: boolean): Promise<void> {
    let it = this.items.get(itemId);
    if (it === undefined) {
      it = { kind, parts: [], final: false };
      this.items.set(itemId, it);
      this.order.push(itemId);
    }
    if (it.final) return Promise.reject(new Error(`append after final for ${itemId}`));
    it.parts.push(Buffer.from(bytes));
    it.final = final;
    return Promise.resolve();
  }
  bytes(itemId: string): Buffer {
    return Buffer.concat(this.items.get(itemId)?.parts ?? []);
  }
}

export function tempDir(prefix = 'vigil-e2ee-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function newDevicePsk(): ExternalPsk {
  return { id: randomBytes(16), secret: randomBytes(32) };
}

/** Round-trip a frame through the byte encoding (what a transport does). */
export function wire(f: PairingFrame): PairingFrame {
  const d = decodeFrame(encodeFrame(f));
  if (!d.ok) throw d.error;
  return d.value;
}

export interface PairOutcome {
  phone?: E2eePhone;
  initiator: PairingInitiator;
  responder: PairingResponder;
  transcript: PairingFrame[];
}

/** Run a full pairing over the in-memory transport. */
export async function pair(args: {
  p: MlsProfile;
  hub: MlsHub;
  devicePsk: ExternalPsk;
  phonePsk?: ExternalPsk;
  phoneDir: string;
  phoneFs?: DurableFs;
  versions?: number[];
  tamper?: (f: PairingFrame) => PairingFrame;
}): Promise<PairOutcome> {
  const responder = new PairingResponder({ hub: args.hub, devicePsk: args.devicePsk });
  const initiator = new PairingInitiator({
    dir: args.phoneDir,
    fs: args.phoneFs ?? new DurableFs(),
    profile: args.p,
    psk: args.phonePsk ?? args.devicePsk,
    ...(args.versions ? { versions: args.versions } : {}),
  });
  const transcript: PairingFrame[] = [];
  let toHub: PairingFrame[] = [await initiator.start()];
  while (toHub.length > 0) {
    const toPhone: PairingFrame[] = [];
    for (const f of toHub) {
      const sent = wire(args.tamper ? args.tamper(f) : f);
      transcript.push(sent);
      toPhone.push(...(await responder.handle(sent)).map(wire));
    }
    toHub = [];
    for (const f of toPhone) {
      transcript.push(f);
      toHub.push(...(await initiator.handle(f)));
    }
    if (initiator.finished && toHub.length === 0) break;
  }
  return {
    ...(initiator.phone ? { phone: initiator.phone } : {}),
    initiator,
    responder,
    transcript,
  };
}

export async function openHub(
  p: MlsProfile,
  dir: string,
  crash?: CrashController,
): Promise<MlsHub> {
  return MlsHub.open({ dir, fs: new DurableFs(crash), deviceId: DEVICE_ID, profile: p });
}

export function sealerFor(hub: MlsHub, sink: CiphertextSink, chunkSize?: number): MlsItemSealer {
  return new MlsItemSealer({ hub, sink, deviceId: DEVICE_ID, ...(chunkSize ? { chunkSize } : {}) });
}

/** Seal one item with the given payload; returns its id. */
export async function sealItem(
  sealer: MlsItemSealer,
  payload: Buffer,
  kind: ItemKind = 'clip',
  pieces = 2,
): Promise<string> {
  const w = await sealer.begin({
    kind,
    startedAt: 1_790_000_000_000,
    codec: kind === 'thumbnail' ? 'image/jpeg' : 'video/mp4',
  });
  const step = Math.max(1, Math.ceil(payload.length / pieces));
  for (let off = 0; off < payload.length; off += step)
    await w.write(payload.subarray(off, off + step));
  await w.close(1000);
  return w.itemId;
}

/** One heartbeat round trip phone -> hub -> phone. */
export async function heartbeatRound(
  hub: MlsHub,
  phone: E2eePhone,
  opts: { refresh?: ('motion' | 'thumbnail' | 'livestream')[] } = {},
) {
  const out = await hub.handleConfig(await phone.heartbeat(opts));
  const inbound = [];
  for (const r of out.replies) inbound.push(await phone.receive(r));
  return { out, inbound };
}

/**
 * A hub paired with one phone whose state lives in a companion directory
 * (`<root>/app`), plus relay accounts for both on `relayUrl` (the phone's saved
 * in that directory, as `vigil app` expects).
 */
export async function pairedOverRelay(args: {
  root: string;
  relayUrl: string;
  fs: DurableFs;
  hubDir?: string;
}): Promise<{
  profile: MlsProfile;
  hub: MlsHub;
  phone: E2eePhone | undefined;
  appDir: string;
  accounts: Awaited<ReturnType<typeof devPairRelay>>;
}> {
  const profile = await loadMlsProfile();
  const hub = await openHub(profile, args.hubDir ?? join(args.root, 'hub'));
  const appDir = join(args.root, 'app');
  const paired = await pair({
    p: profile,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: e2eeDir(appDir),
  });
  const accounts = await devPairRelay(args.relayUrl, DEVICE_ID);
  await saveAccount(args.fs, appDir, accounts.phone);
  return { profile, hub, phone: paired.phone, appDir, accounts };
}
