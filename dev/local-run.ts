/**
 * The full local run: a relay, a hub (the real supervisor state machine, real
 * MLS, real media pipeline on a simulated camera, real uplink) and the
 * companion's browser viewer, all on loopback. Development mode pairs the
 * phone automatically: the real pairing responder and initiator exchange their
 * frames in memory (instead of over the hotspot), then both meet at the relay
 * through a rendezvous token, as a real pairing ends.
 *
 * Storage is a plain directory here (no dm-crypt on a laptop): logged loudly.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PairingInitiator } from '../app/e2ee/pairing-initiator.js';
import { E2eePhone } from '../app/e2ee/phone.js';
import { E2eeCrypto } from '../app/e2ee-crypto.js';
import { devPairRelay, e2eeDir, saveAccount } from '../app/account.js';
import { ItemStore } from '../app/store.js';
import { Syncer } from '../app/sync.js';
import { startViewer } from '../app/viewer/server.js';
import type { RunningViewer } from '../app/viewer/server.js';
import { SimulatedCamera } from '../hw/camera/simulated-camera.js';
import type { MotionSchedule } from '../hw/camera/simulated-camera.js';
import { DurableFs } from '../hw/os/fs.js';
import { NOOP_NOTIFIER } from '../hw/os/sd-notify.js';
import { deriveIdentity, newIdentity } from '../protocol/identity.js';
import { ValidationError, VigilError } from '../base/errors.js';
import { decodeFrame, encodeFrame } from '../protocol/e2ee-frames.js';
import type { PairingFrame } from '../protocol/e2ee-frames.js';
import { LazyMlsProfile } from '../protocol/mls-profile.js';
import type { ExternalPsk } from '../protocol/mls-profile.js';
import { RelayClient } from '../protocol/relay-client.js';
import { startRelay } from '../relay/server.js';
import type { RunningRelay } from '../relay/server.js';
import { parseConfig } from '../firmware/config/config.js';
import type { Logger } from '../base/logger.js';
import { createMediaPipeline } from '../firmware/media/pipeline.js';
import type { MediaPipeline } from '../firmware/media/pipeline.js';
import { MlsHub } from '../firmware/mls/hub.js';
import { RelayConfigChannel } from '../firmware/mls/config-channel.js';
import { PairingResponder } from '../firmware/mls/pairing-responder.js';
import { MlsItemSealer } from '../firmware/mls/sealer.js';
import type { ChildSupervisor } from '../firmware/supervisor/children.js';
import { Hub } from '../firmware/supervisor/hub.js';
import type { HubServices, UnlockResult } from '../firmware/supervisor/hub.js';
import type { Event } from '../firmware/supervisor/state.js';
import { createUplink } from '../firmware/uplink/uplink.js';
import type { Uplink } from '../firmware/uplink/uplink.js';

export interface LocalRunOptions {
  /** Everything the run keeps: hub data, relay data, companion state. */
  readonly dir: string;
  readonly logger: Logger;
  readonly host?: string;
  readonly relayPort?: number;
  readonly viewerPort?: number;
  readonly width?: number;
  readonly height?: number;
  readonly fps?: number;
  /** When the simulated object moves (default: 6 s of motion every 40 s). */
  readonly motion?: MotionSchedule;
  readonly preRollS?: number;
  readonly postRollS?: number;
}

export interface LocalRun {
  readonly relayUrl: string;
  readonly viewerUrl: string;
  readonly hub: Hub;
  readonly phone: E2eePhone;
  readonly store: ItemStore;
  readonly crypto: E2eeCrypto;
  media(): MediaPipeline | undefined;
  uplink(): Uplink | undefined;
  stop(): Promise<void>;
}

interface DevIdentity {
  deviceId: string;
  secret: string;
}

async function loadOrCreateIdentity(
  fs: DurableFs,
  dir: string,
): Promise<{ deviceId: string; psk: ExternalPsk }> {
  const file = join(dir, 'identity.json');
  let id: DevIdentity;
  const raw = await fs.readIfExists(file);
  if (raw) id = JSON.parse(raw.toString('utf8')) as DevIdentity;
  else {
    const fresh = newIdentity();
    id = { deviceId: fresh.deviceId, secret: Buffer.from(fresh.secret).toString('base64') };
    await fs.writeFileAtomic(file, JSON.stringify(id) + '\n', 'dev-identity');
  }
  const derived = deriveIdentity(Buffer.from(id.secret, 'base64'), id.deviceId);
  return { deviceId: id.deviceId, psk: { id: derived.mlsPskId, secret: derived.mlsPsk } };
}

/** Run the real pairing handshake between hub and phone over an in-memory frame transport. */
async function pairInMemory(
  hub: MlsHub,
  psk: ExternalPsk,
  phoneDir: string,
  fs: DurableFs,
): Promise<E2eePhone> {
  const responder = new PairingResponder({ hub, devicePsk: psk });
  const initiator = new PairingInitiator({ dir: phoneDir, fs, profile: new LazyMlsProfile(), psk });
  // every frame crosses the byte encoding, exactly as over the hotspot's TCP server
  const wire = (f: PairingFrame): PairingFrame => {
    const d = decodeFrame(encodeFrame(f));
    if (!d.ok) throw new ValidationError(d.reason);
    return d.value;
  };
  let toHub: PairingFrame[] = [await initiator.start()];
  for (let round = 0; toHub.length > 0 && round < 64; round++) {
    const toPhone: PairingFrame[] = [];
    for (const f of toHub) toPhone.push(...(await responder.handle(wire(f))).map(wire));
    toHub = [];
    for (const f of toPhone) toHub.push(...(await initiator.handle(f)));
    if (initiator.finished && toHub.length === 0) break;
  }
  const phone = initiator.phone;
  if (!phone) {
    const why = responder.failure?.message ?? 'handshake did not complete';
    throw new VigilError('EPAIRING', `development pairing failed: ${why}`);
  }
  return phone;
}

export async function startLocalRun(o: LocalRunOptions): Promise<LocalRun> {
  const log = o.logger;
  const fs = new DurableFs();
  const host = o.host ?? '127.0.0.1';
  const hubDir = join(o.dir, 'hub');
  const dataDir = join(hubDir, 'data');
  const appDir = join(o.dir, 'app');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await mkdir(appDir, { recursive: true, mode: 0o700 });

  const relay: RunningRelay = await startRelay({
    dataDir: join(o.dir, 'relay'),
    host,
    ...(o.relayPort !== undefined ? { port: o.relayPort } : {}),
    logger: log.child('relay'),
  });

  const { deviceId, psk } = await loadOrCreateIdentity(fs, hubDir);
  const profile = new LazyMlsProfile();
  const mls = await MlsHub.open({
    dir: join(dataDir, 'mls'),
    fs,
    deviceId,
    profile,
    logger: log.child('hub'),
  });

  let media: MediaPipeline | undefined;
  let uplink: Uplink | undefined;
  let configChannel: RelayConfigChannel | undefined;
  let phone: E2eePhone | undefined;
  const relayAccountFile = join(dataDir, 'relay-account.json');

  const services: HubServices = {
    unlockStorage(): Promise<UnlockResult> {
      log.warn('DEVELOPMENT MODE: hub storage is a plain directory, not a LUKS volume', {
        dataDir,
      });
      return Promise.resolve({ ok: true, dataDir });
    },
    isPaired: () => Promise.resolve(mls.phones.length > 0),
    async startPairing(
      _dir: string,
      _signal: AbortSignal,
      emit: (e: Event) => void,
    ): Promise<void> {
      log.info('pairing the development phone (in-memory frames, then relay rendezvous)');
      phone = await pairInMemory(mls, psk, e2eeDir(appDir), fs);
      const accounts = await devPairRelay(relay.url, deviceId);
      await saveAccount(fs, appDir, accounts.phone);
      await fs.writeFileAtomic(
        relayAccountFile,
        JSON.stringify(accounts.device) + '\n',
        'dev-relay-account',
      );
      emit({ type: 'paired' });
    },
    stopPairing: () => Promise.resolve(),
    async startServices(
      _dir: string,
      _signal: AbortSignal,
      emit: (e: Event) => void,
      _children: ChildSupervisor,
    ): Promise<void> {
      const device = JSON.parse(await readFile(relayAccountFile, 'utf8')) as {
        deviceId: string;
        token: string;
      };
      uplink = await createUplink({
        relayUrl: relay.url,
        credentials: device,
        stateDir: join(dataDir, 'uplink'),
        fs,
        logger: log.child('uplink'),
        backoff: { initialMs: 200, maxMs: 5000 },
      });
      uplink.start();
      configChannel = new RelayConfigChannel({
        hub: mls,
        client: new RelayClient({ url: relay.url, token: device.token }),
        logger: log.child('config'),
        stateDir: join(dataDir, 'config'),
        fs,
      });
      configChannel.start();
      const sealer = new MlsItemSealer({
        hub: mls,
        sink: uplink,
        deviceId,
        logger: log.child('sealer'),
      });
      const width = o.width ?? 640;
      const height = o.height ?? 360;
      const fps = o.fps ?? 15;
      const camera = new SimulatedCamera({
        name: 'simulated',
        width,
        height,
        fps,
        schedule: o.motion ?? { intervals: [[4, 10]], periodS: 40 },
      });
      media = createMediaPipeline({
        camera,
        sealer,
        logger: log.child('media'),
        encoderPreference: 'software',
        config: {
          encoder: { width, height, fps, bitrateKbps: 1000, softwarePreset: 'ultrafast' },
          clips: { preRollS: o.preRollS ?? 2, postRollS: o.postRollS ?? 3 },
        },
      });
      media.on((e) => {
        // the encoder restarts itself with backoff; a pipeline that gives up degrades the hub
        if (e.type === 'state' && e.state === 'failed')
          emit({ type: 'child-crash-loop', child: 'media' });
      });
      await media.start();
    },
    async stopServices(): Promise<void> {
      await media?.stop();
      await configChannel?.stop();
      await uplink?.stop();
    },
    applyUpdate: () => Promise.resolve('rolled-back'),
    status: () => ({
      mode: 'development',
      relay: relay.url,
      ...(media ? { media: media.status() } : {}),
      ...(uplink ? { uplink: uplink.status() } : {}),
      ...(configChannel ? { configChannel: configChannel.status() } : {}),
    }),
  };

  const hub = new Hub({
    config: parseConfig({
      mode: 'development',
      storage: { dataDir: '/data', keySources: ['dev-keyfile'] },
    }),
    logger: log.child('hub'),
    notifier: NOOP_NOTIFIER,
    services,
    statusFile: join(hubDir, 'run', 'status.json'),
  });
  const hubDone = hub.run();

  // Wait until the hub is running (paired, services up) or has failed.
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      const s = hub.executor.state;
      if (s.name === 'running') resolve();
      else if (s.name === 'failed' || s.name === 'stopping')
        reject(new VigilError('EDEV', `hub did not start: ${hub.status().summary}`));
      else setTimeout(check, 100);
    };
    check();
  });

  // The companion: E2EE phone state, relay account, local store and viewer.
  const phoneState = phone ?? (await E2eePhone.open({ dir: e2eeDir(appDir), fs, profile }));
  if (!phoneState) throw new VigilError('EDEV', 'the development phone has no E2EE state');
  const crypto = new E2eeCrypto(phoneState);
  const store = new ItemStore(appDir, fs);
  const accountRaw = JSON.parse(await readFile(join(appDir, 'relay.json'), 'utf8')) as {
    url: string;
    token: string;
  };
  const client = new RelayClient({ url: accountRaw.url, token: accountRaw.token });
  const viewer: RunningViewer = await startViewer({
    store,
    crypto,
    client,
    host,
    ...(o.viewerPort !== undefined ? { port: o.viewerPort } : {}),
    logger: log.child('viewer'),
    token: randomBytes(18).toString('base64url'),
  });
  const syncAbort = new AbortController();
  const sync = new Syncer({ client, crypto, store, logger: log.child('sync') }).run(
    syncAbort.signal,
  );

  return {
    relayUrl: relay.url,
    viewerUrl: viewer.url,
    hub,
    phone: phoneState,
    store,
    crypto,
    media: () => media,
    uplink: () => uplink,
    async stop(): Promise<void> {
      syncAbort.abort();
      await sync.catch(() => undefined);
      await viewer.close();
      hub.stop(0);
      await hubDone;
      await relay.close();
    },
  };
}
