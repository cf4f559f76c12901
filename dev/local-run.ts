/**
 * The full local run: a relay, a hub (the real supervisor state machine, real
 * MLS, real media pipeline on a simulated camera, real uplink) and the
 * companion's browser viewer, all on loopback. Development mode pairs the
 * phone automatically: the real pairing responder and initiator exchange their
 * frames in memory (instead of over the hotspot), then both meet at the relay
 * through a rendezvous token, as a real pairing ends.
 *
 * Storage is a plain directory here (no dm-crypt on a laptop): logged loudly.
 *
 * Everything a second run needs stays in the state directory: the hub's
 * identity and MLS state, the relay's data, the phone, and `local-run.json`
 * with the relay port (picked once, then reused, so the phone's saved relay
 * address stays right) and the viewer's access token (so an open viewer tab
 * and a bookmarked URL keep working across restarts).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { PairingInitiator } from '../app/e2ee/pairing-initiator.js';
import { E2eePhone } from '../app/e2ee/phone.js';
import { E2eeCrypto } from '../app/e2ee-crypto.js';
import { devPairRelay, e2eeDir, loadAccount, saveAccount } from '../app/account.js';
import { ItemStore, type StoredItem } from '../app/store.js';
import { Syncer } from '../app/sync.js';
import { FollowScheduler } from '../app/follow.js';
import { HubLink } from '../app/hub-link.js';
import { startViewer } from '../app/viewer/server.js';
import { NoticeFeed } from '../app/push.js';
import { PhonesAdmin } from '../app/phones.js';
import { RelayContact } from '../app/relay-contact.js';
import { localHubReport } from './hub-report.js';
import type { RunningViewer } from '../app/viewer/server.js';
import { SimulatedCamera } from '../hw/camera/simulated-camera.js';
import { SimulatedTone } from '../hw/audio/simulated-tone.js';
import type { MotionSchedule } from '../hw/camera/simulated-camera.js';
import { frameClockLayout } from '../hw/camera/frame-clock.js';
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
import { HubLiveness } from '../firmware/mls/liveness.js';
import { LiveControl } from '../firmware/media/live-control.js';
import { sendHealthNotices } from '../firmware/media/health-notices.js';
import { sendMotionNotices } from '../firmware/media/motion-notices.js';
import { answerPhoneRoster } from '../firmware/mls/phone-roster.js';
import { PairingResponder } from '../firmware/mls/pairing-responder.js';
import { MlsItemSealer } from '../firmware/mls/sealer.js';
import type { ChildSupervisor } from '../firmware/supervisor/children.js';
import { Hub } from '../firmware/supervisor/hub.js';
import type { HubServices, UnlockResult } from '../firmware/supervisor/hub.js';
import type { Event } from '../firmware/supervisor/state.js';
import { createUplink } from '../firmware/uplink/uplink.js';
import type { PrivacyConfig } from '../firmware/uplink/privacy.js';
import { privacyUplinkOption } from '../firmware/uplink/stream.js';
import type { Uplink } from '../firmware/uplink/uplink.js';
import { encodeQrPayload } from '../protocol/qr-payload.js';
import { startPairingPort } from './pairing-port.js';
import type { PairingPort } from './pairing-port.js';

export interface LocalRunOptions {
  /** Everything the run keeps: hub data, relay data, companion state. */
  readonly dir: string;
  readonly logger: Logger;
  readonly host?: string;
  readonly relayPort?: number;
  readonly viewerPort?: number;
  /** Simulated camera size (default 640x480, a size the simulated camera offers). */
  readonly width?: number;
  readonly height?: number;
  readonly fps?: number;
  /** When the simulated object moves (default: 6 s of motion every 40 s). */
  readonly motion?: MotionSchedule;
  readonly preRollS?: number;
  readonly postRollS?: number;
  /** The hub's sealed hub-alive interval (default 15 min). */
  readonly aliveIntervalMs?: number;
  /** The companion's offline-alert threshold (default 3 x the hub's interval). */
  readonly offlineAfterMs?: number;
  /** The companion's heartbeat schedule (default 1 h). */
  readonly heartbeatMs?: number;
  /** The companion's post-compromise refresh cadence per group (default a week). */
  readonly refreshMs?: number;
  /** The relay's "hub unseen" push threshold (default 30 min; 0 = off). */
  readonly unseenAfterMs?: number;
  /**
   * Serve the real pairing frame server on this loopback port (0 picks one) so
   * another client can pair with the hub (dev/pairing-port.ts). Off when absent.
   */
  readonly pairingPort?: number;
  /**
   * Stamp each simulated frame with its capture time (hw/camera/frame-clock.ts),
   * masked out of motion detection: for glass-to-glass latency measurements.
   */
  readonly frameClock?: boolean;
  /**
   * Keyframe interval = fMP4 fragment length (default 1 s, as on the hub). Live
   * view waits for whole fragments, so this bounds its latency from below.
   */
  readonly gopSeconds?: number;
  /**
   * Give the simulated camera a microphone: a 440 Hz tone (ffmpeg lavfi sine),
   * encoded AAC-LC into the clips and live view (docs/media.md, "Audio"). Off by default.
   */
  readonly audio?: boolean;
  /** The hub's privacy mode (issue #20, firmware/uplink/privacy.ts); default off. */
  readonly privacy?: PrivacyConfig;
}

/** Where a client pairs with the run's hub (`--pairing-port`). */
export interface LocalPairing {
  readonly host: string;
  readonly port: number;
  /** File holding the hub's label payload (`VIGIL1:...`: the QR code of a card). */
  readonly labelFile: string;
}

export interface LocalRun {
  readonly relayUrl: string;
  readonly viewerUrl: string;
  /** The companion's state directory (`vigil app ... --dir` this). */
  readonly appDir: string;
  /** The pairing frame server, with `pairingPort`. */
  readonly pairing: LocalPairing | undefined;
  readonly hub: Hub;
  readonly phone: E2eePhone;
  readonly store: ItemStore;
  readonly crypto: E2eeCrypto;
  readonly link: HubLink;
  /** Notices the companion received (the viewer raises browser notifications for them). */
  readonly notices: NoticeFeed;
  readonly relay: RunningRelay;
  /** The companion's heartbeat and refresh schedule (app/follow.ts). */
  readonly follow: FollowScheduler;
  /** Called with the items each sync pass stored (tests wait on it). Returns the unsubscribe. */
  onStored(fn: (items: readonly StoredItem[]) => void): () => void;
  media(): MediaPipeline | undefined;
  /** The hub's simulated camera (tests unplug and replug it), while the hub runs. */
  camera(): SimulatedCamera | undefined;
  /** Stop only the hub (relay and companion keep running), as if it lost power. */
  stopHub(): Promise<void>;
  /** Start the hub again after stopHub (its state is kept). */
  startHub(): Promise<void>;
  uplink(): Uplink | undefined;
  stop(): Promise<void>;
}

/** Defaults that match what the simulated camera offers (no scaling, square pixels). */
export const DEFAULT_SIZE = { width: 640, height: 480 } as const;
export const DEFAULT_FPS = 15;

/** A listening port is taken (by another local run, or anything else). */
export class PortBusyError extends VigilError {
  constructor(message: string) {
    super('EPORTBUSY', message);
    this.name = 'PortBusyError';
  }
}

/**
 * Fail before anything starts when a port we must listen on is taken, so a busy
 * port costs one clear line instead of a half-started run.
 */
async function assertPortFree(host: string, port: number, what: string, hint: string) {
  if (port === 0) return;
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE')
        reject(new PortBusyError(`${what} port ${port} on ${host} is already in use; ${hint}`));
      else if (e.code === 'EACCES')
        reject(new PortBusyError(`${what} port ${port} on ${host} needs privileges; ${hint}`));
      else reject(e);
    });
    srv.listen(port, host, () => {
      srv.close(() => {
        resolve();
      });
    });
  });
}

/** A listen() that lost a race for its port after assertPortFree(): the same one line. */
function portError(e: unknown, host: string, port: number, what: string, hint: string): unknown {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE'
    ? new PortBusyError(`${what} port ${port} on ${host} is already in use; ${hint}`)
    : e;
}

const PAIRING_HINT = 'stop what uses it, or pass another --pairing-port';

const RunState = z.object({
  relayPort: z.number().int().min(1).max(65535).optional(),
  viewerToken: z.string().min(16).optional(),
});
type RunState = z.infer<typeof RunState>;

async function loadRunState(fs: DurableFs, file: string): Promise<RunState> {
  const raw = await fs.readIfExists(file);
  if (raw === undefined) return {};
  try {
    return RunState.parse(JSON.parse(raw.toString('utf8')));
  } catch (e) {
    throw new VigilError(
      'ECONFIG',
      `${file} is not valid local-run state (delete it to pick new ports)`,
      { cause: e },
    );
  }
}

interface DevIdentity {
  deviceId: string;
  secret: string;
}

async function loadOrCreateIdentity(
  fs: DurableFs,
  dir: string,
): Promise<{ deviceId: string; secret: Uint8Array; psk: ExternalPsk }> {
  const file = join(dir, 'identity.json');
  let id: DevIdentity;
  const raw = await fs.readIfExists(file);
  if (raw) id = JSON.parse(raw.toString('utf8')) as DevIdentity;
  else {
    const fresh = newIdentity();
    id = { deviceId: fresh.deviceId, secret: Buffer.from(fresh.secret).toString('base64') };
    await fs.writeFileAtomic(file, JSON.stringify(id) + '\n', 'dev-identity');
  }
  const secret = Buffer.from(id.secret, 'base64');
  const derived = deriveIdentity(secret, id.deviceId);
  return {
    deviceId: id.deviceId,
    secret,
    psk: { id: derived.mlsPskId, secret: derived.mlsPsk },
  };
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
  const stateFile = join(o.dir, 'local-run.json');
  const saved = await loadRunState(fs, stateFile);

  // Ports first: a busy one stops the run before anything has started.
  const relayPort = o.relayPort ?? saved.relayPort ?? 0;
  const relayHint =
    o.relayPort === undefined && saved.relayPort !== undefined
      ? `it was saved in ${stateFile} by an earlier run: stop what uses it, or pass --relay-port N`
      : 'stop what uses it, or pass --relay-port N';
  const viewerPort = o.viewerPort ?? 0;
  const viewerHint = 'is another local run still running? Or pass --viewer-port N';
  await assertPortFree(host, viewerPort, 'viewer', viewerHint);
  await assertPortFree(host, relayPort, 'relay', relayHint);
  if (o.pairingPort !== undefined)
    await assertPortFree(host, o.pairingPort, 'pairing', PAIRING_HINT);

  const relay: RunningRelay = await startRelay({
    dataDir: join(o.dir, 'relay'),
    host,
    port: relayPort,
    logger: log.child('relay'),
    // loopback push endpoints (tests' RFC 8030 servers); the offline push as configured
    push: {
      allowLoopbackHttp: true,
      ...(o.unseenAfterMs !== undefined ? { unseenAfterMs: o.unseenAfterMs } : {}),
    },
  }).catch((e: unknown) => {
    throw portError(e, host, relayPort, 'relay', relayHint);
  });
  // From here on, a failure stops what has started before it is reported.
  const started: (() => Promise<unknown>)[] = [() => relay.close()];
  try {
    return await startAfterRelay({
      o,
      fs,
      host,
      hubDir,
      dataDir,
      appDir,
      stateFile,
      saved,
      relay,
      viewerPort,
      viewerHint,
      started,
    });
  } catch (e) {
    for (const stop of started.reverse()) await stop().catch(() => undefined);
    throw e;
  }
}

interface AfterRelay {
  readonly o: LocalRunOptions;
  readonly fs: DurableFs;
  readonly host: string;
  readonly hubDir: string;
  readonly dataDir: string;
  readonly appDir: string;
  readonly stateFile: string;
  readonly saved: RunState;
  readonly relay: RunningRelay;
  readonly viewerPort: number;
  readonly viewerHint: string;
  /** Stops for what has started, pushed in start order. */
  readonly started: (() => Promise<unknown>)[];
}

/** Everything after the relay: hub, pairing, services, companion, viewer. */
async function startAfterRelay(c: AfterRelay): Promise<LocalRun> {
  const { o, fs, host, hubDir, dataDir, appDir, stateFile, saved, relay, viewerPort } = c;
  const { viewerHint, started } = c;
  const log = o.logger;
  const viewerToken = saved.viewerToken ?? randomBytes(18).toString('base64url');
  if (saved.relayPort !== relay.port || saved.viewerToken !== viewerToken)
    await fs.writeFileAtomic(
      stateFile,
      JSON.stringify({ relayPort: relay.port, viewerToken }, null, 2) + '\n',
      'dev-run-state',
    );

  const { deviceId, secret, psk } = await loadOrCreateIdentity(fs, hubDir);
  const profile = new LazyMlsProfile();
  const mls = await MlsHub.open({
    dir: join(dataDir, 'mls'),
    fs,
    deviceId,
    profile,
    logger: log.child('hub'),
  });

  let media: MediaPipeline | undefined;
  let camera: SimulatedCamera | undefined;
  let uplink: Uplink | undefined;
  let configChannel: RelayConfigChannel | undefined;
  let liveness: HubLiveness | undefined;
  let liveControl: LiveControl | undefined;
  let stopHealth: (() => void) | undefined;
  let phone: E2eePhone | undefined;
  let servicesUp = false;
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
        ...privacyUplinkOption(o.privacy, mls, () => configChannel),
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
      const width = o.width ?? DEFAULT_SIZE.width;
      const height = o.height ?? DEFAULT_SIZE.height;
      const fps = o.fps ?? DEFAULT_FPS;
      camera = new SimulatedCamera({
        name: 'simulated',
        width,
        height,
        fps,
        schedule: o.motion ?? { intervals: [[4, 10]], periodS: 40 },
        frameClock: o.frameClock ?? false,
      });
      // the clock strip changes every frame: it must not count as motion
      const clockMask = { x: 0, y: 0, w: 1, h: (2 * frameClockLayout(width).cell) / height };
      media = createMediaPipeline({
        camera,
        sealer,
        logger: log.child('media'),
        encoderPreference: 'software',
        ...(o.audio === true ? { audio: new SimulatedTone() } : {}),
        config: {
          audio: { enabled: o.audio === true },
          encoder: {
            width,
            height,
            fps,
            bitrateKbps: 1000,
            softwarePreset: 'ultrafast',
            ...(o.gopSeconds !== undefined ? { gopSeconds: o.gopSeconds } : {}),
          },
          clips: { preRollS: o.preRollS ?? 2, postRollS: o.postRollS ?? 3 },
          ...(o.frameClock === true ? { motion: { masks: [clockMask] } } : {}),
        },
      });
      media.on((e) => {
        // the encoder restarts itself with backoff; a pipeline that gives up degrades the hub
        if (e.type === 'state' && e.state === 'failed')
          emit({ type: 'child-crash-loop', child: 'media' });
      });
      await media.start();
      const channel = configChannel;
      liveControl = new LiveControl({ channel, media: () => media, logger: log.child('live') });
      const stopHealthNotices = sendHealthNotices({ media, channel, logger: log.child('health') });
      const stopMotionNotices = sendMotionNotices({
        media,
        channel: uplink.scheduledNotices ?? channel,
        logger: log.child('hub'),
      });
      const stopRoster = answerPhoneRoster({
        channel,
        phones: () => mls.phones,
        logger: log.child('hub'),
      });
      stopHealth = () => {
        stopHealthNotices();
        stopMotionNotices();
        stopRoster();
      };
      liveness = new HubLiveness({
        channel,
        logger: log.child('hub'),
        ...(o.aliveIntervalMs !== undefined ? { intervalMs: o.aliveIntervalMs } : {}),
      });
      liveness.start();
      servicesUp = true;
    },
    async stopServices(): Promise<void> {
      servicesUp = false;
      liveness?.stop();
      stopHealth?.();
      await liveControl?.close();
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

  const newHub = (): Hub =>
    new Hub({
      config: parseConfig({
        mode: 'development',
        storage: { dataDir: '/data', keySources: ['dev-keyfile'] },
      }),
      logger: log.child('hub'),
      notifier: NOOP_NOTIFIER,
      services,
      statusFile: join(hubDir, 'run', 'status.json'),
    });
  // Wait until the hub is running with its services (camera, encoder, uplink) up, or has failed.
  const untilRunning = (h: Hub): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const check = (): void => {
        const s = h.executor.state;
        if ((s.name === 'running' && servicesUp) || s.name === 'degraded') resolve();
        else if (s.name === 'failed' || s.name === 'stopping')
          reject(new VigilError('EDEV', `hub did not start: ${h.status().summary}`));
        else setTimeout(check, 100);
      };
      check();
    });
  let hub = newHub();
  let hubDone: Promise<unknown> | undefined = hub.run();
  started.push(async () => {
    hub.stop(1);
    await hubDone;
  });
  await untilRunning(hub);

  // The interoperability target: the production frame server in front of this hub.
  let pairing: LocalPairing | undefined;
  let pairingPort: PairingPort | undefined;
  if (o.pairingPort !== undefined) {
    const labelFile = join(hubDir, 'label.txt');
    await fs.writeFileAtomic(labelFile, encodeQrPayload({ deviceId, secret }) + '\n', 'dev-label');
    const device = JSON.parse(await readFile(relayAccountFile, 'utf8')) as { token: string };
    const hubRelay = new RelayClient({ url: relay.url, token: device.token });
    pairingPort = await startPairingPort({
      host,
      port: o.pairingPort,
      hub: mls,
      devicePsk: psk,
      offerRendezvous: (token) => hubRelay.offerRendezvous(token),
      logger: log.child('pairing'),
    }).catch((e: unknown) => {
      throw portError(e, host, o.pairingPort ?? 0, 'pairing', PAIRING_HINT);
    });
    const served = pairingPort;
    started.push(() => served.close());
    pairing = { host, port: served.port, labelFile };
  }

  // The companion: E2EE phone state, relay account, local store and viewer.
  const phoneState = phone ?? (await E2eePhone.open({ dir: e2eeDir(appDir), fs, profile }));
  if (!phoneState) throw new VigilError('EDEV', 'the development phone has no E2EE state');
  const crypto = new E2eeCrypto(phoneState);
  const store = new ItemStore(appDir, fs);
  let account = await loadAccount(fs, appDir);
  if (!account) throw new VigilError('EDEV', `the development phone has no relay account`);
  if (account.url !== relay.url) {
    // a run with another --relay-port (or state from before ports were kept): follow the relay
    log.info('phone relay address updated', { from: account.url, to: relay.url });
    account = { ...account, url: relay.url };
    await saveAccount(fs, appDir, account);
  }
  const client = new RelayClient({ url: account.url, token: account.token });
  const link = new HubLink({
    onApp: (topic, h) => {
      crypto.onApp(topic, h);
    },
    seal: (m) => phoneState.send(m),
    postUp: (b) => client.postUp('config', b),
    ...(o.offlineAfterMs !== undefined ? { offlineAfterMs: o.offlineAfterMs } : {}),
  });
  started.push(() => {
    link.close();
    return Promise.resolve();
  });
  const notices = new NoticeFeed();
  crypto.onNotice((n) => notices.addNotice(n));
  const contact = new RelayContact();
  const syncer = new Syncer({ client, crypto, store, logger: log.child('sync'), contact });
  const viewer: RunningViewer = await startViewer({
    store,
    crypto,
    client,
    link,
    notices: {
      feed: notices,
      receive: (b) => crypto.openPushed(b),
      deviceId: account.deviceId,
    },
    host,
    port: viewerPort,
    logger: log.child('viewer'),
    token: viewerToken,
    contact,
    device: () => localHubReport(hub, media, dataDir),
    // development: the simulated camera records an event now, as motion would
    testEvent: () => {
      if (!media) throw new VigilError('EDEV', 'the hub is not running');
      media.trigger(3000);
    },
    phones: new PhonesAdmin({
      crypto,
      client,
      sync: () => syncer.syncOnce(),
      dir: appDir,
      fs,
    }),
  }).catch((e: unknown) => {
    throw portError(e, host, viewerPort, 'viewer', viewerHint);
  });
  started.push(() => viewer.close());
  // One pass before we report ready: what arrived while the run was stopped is listed first.
  const storedListeners = new Set<(items: readonly StoredItem[]) => void>();
  const stored = (items: readonly StoredItem[]): void => {
    for (const fn of storedListeners) fn(items);
  };
  await syncer
    .syncOnce()
    .then((r) => {
      stored(r.stored);
    })
    .catch(() => undefined); // run() below logs and retries a failure
  const syncAbort = new AbortController();
  const sync = syncer.run(syncAbort.signal, stored);
  // heartbeats on a schedule, refresh by re-add on a cadence (app/follow.ts)
  const follow = new FollowScheduler({
    sendHeartbeat: async (refresh) => {
      await client.postUp('config', await phoneState.heartbeat({ refresh }));
    },
    logger: log.child('follow'),
    dir: appDir,
    fs,
    ...(o.heartbeatMs !== undefined ? { heartbeatMs: o.heartbeatMs } : {}),
    ...(o.refreshMs !== undefined ? { refreshMs: o.refreshMs } : {}),
  });
  await follow.start();

  return {
    relayUrl: relay.url,
    viewerUrl: viewer.url,
    appDir,
    pairing,
    get hub(): Hub {
      return hub;
    },
    phone: phoneState,
    store,
    crypto,
    link,
    notices,
    relay,
    follow,
    onStored(fn) {
      storedListeners.add(fn);
      return () => storedListeners.delete(fn);
    },
    media: () => media,
    camera: () => camera,
    uplink: () => uplink,
    async stopHub(): Promise<void> {
      if (!hubDone) return;
      hub.stop(0);
      await hubDone;
      hubDone = undefined;
    },
    async startHub(): Promise<void> {
      if (hubDone) return;
      hub = newHub();
      hubDone = hub.run();
      await untilRunning(hub);
    },
    async stop(): Promise<void> {
      await pairingPort?.close(); // no new phone while the hub stops
      await follow.stop();
      link.close();
      syncAbort.abort();
      if (hubDone) hub.stop(0);
      await Promise.all([sync.catch(() => undefined), viewer.close(), hubDone]);
      await relay.close();
    },
  };
}
