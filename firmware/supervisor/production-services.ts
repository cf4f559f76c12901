/**
 * Production composition of the hub's services on a real device: the LUKS
 * data volume (firmware/storage), the device identity from the provisioning
 * bundle inside it, the MLS hub (firmware/mls), the pairing hotspot and frame
 * server (firmware/pairing over hw/wifi), and, once paired, the camera
 * pipeline (firmware/media over hw/camera + hw/encoder) sealing into the
 * durable uplink (firmware/uplink) towards the relay.
 *
 * Heavy modules (ts-mls, camera bindings) load lazily, when the state machine
 * first needs them, to keep the locked hub small.
 */
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import type { SystemClock } from '../../hw/clock/system-clock.js';
import type { Station } from '../../hw/wifi/station.js';
import { VigilError } from '../../base/errors.js';
import type { ExternalPsk } from '../../protocol/mls-profile.js';
import type { VigilConfig } from '../config/config.js';
import { describeCost, privacyCost } from '../uplink/privacy.js';
import { privacyUplinkOption } from '../uplink/stream.js';
import type { Logger } from '../../base/logger.js';
import type { MediaPipeline } from '../media/pipeline.js';
import type { MlsHub } from '../mls/hub.js';
import type { ConfigChannel, RelayConfigChannel } from '../mls/config-channel.js';
import type { PairingController } from '../pairing/controller.js';
import type { RelayMeeting } from '../pairing/rendezvous.js';
import type { Uplink } from '../uplink/uplink.js';
import type { StorageWiring } from '../storage/hub-wiring.js';
import type { HubRetention } from '../storage/hub-retention.js';
import type { Storage } from '../storage/storage.js';
import type { HubServices, UnlockResult } from './hub.js';
import type { ProvisioningBundle } from '../../protocol/provisioning-bundle.js';
import {
  ServiceContacts,
  readRelayOverride,
  resolveRelay,
  saveRelayOverride,
} from '../config/services.js';
import type { ResolvedRelay } from '../config/services.js';
import type { Event } from './state.js';

export interface ProductionDeps {
  readonly config: VigilConfig;
  readonly paths: HostPaths;
  readonly logger: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** A clip started (true) or ended (false): the status LED (firmware/supervisor/panel.ts). */
  readonly onRecording?: (recording: boolean) => void;
  /** The system clock the phone's time is applied to (default: `date -s` + fake-hwclock). */
  readonly clock?: SystemClock;
}

/** Where, inside the data volume, the hub keeps what pairing established. */
export const RELAY_ACCOUNT_FILE = 'relay-account.json';
/** The home network the phone gave at pairing (inside the data volume: the passphrase is secret). */
export const WIFI_FILE = 'home-wifi.json';
/** The phone's pairing token until the hub offered it at the relay (a restart resumes the meeting). */
export const RENDEZVOUS_FILE = 'relay-rendezvous.json';

interface RelayAccountFile {
  readonly url: string;
  readonly deviceId: string;
  readonly token: string;
}

/** The production services, plus what other wiring (escrow, OTA reports) needs once paired. */
export interface ProductionServices extends HubServices {
  /** The config group over the relay: set while the hub runs paired services. */
  readonly configChannel: ConfigChannel | undefined;
}

export function createProductionServices(deps: ProductionDeps): Promise<ProductionServices> {
  const { config, paths } = deps;
  const log = deps.logger.child('services');
  const fs = new DurableFs();
  const env = deps.env ?? process.env;
  const mountPoint = paths.host(config.storage.dataDir);

  let identity:
    | {
        deviceId: string;
        secret: Uint8Array;
        psk: ExternalPsk;
        services: Pick<ProvisioningBundle, 'relay' | 'ota'>;
      }
    | undefined;
  // the relay in use and when it last answered (`vigil hub status`)
  const contacts = new ServiceContacts();
  let relayInUse: ResolvedRelay | undefined;
  // the relay the device account (so the uplink) is at, when it differs from the chosen one
  let relayAccountElsewhere: string | undefined;
  let mls: MlsHub | undefined;
  let pairing: PairingController | undefined;
  let media: MediaPipeline | undefined;
  let uplink: Uplink | undefined;
  let retention: HubRetention | undefined;
  // the meeting at the relay (account + pairing token offer), retried until it works
  let meeting: RelayMeeting | undefined;
  // pairing/network wiring (docs/pairing.md): one station shared by the pairing handoff and
  // the boot-time rejoin; a stop of the pairing window is awaited before the station is used
  let station: Station | undefined;
  let pairingStopped: Promise<void> = Promise.resolve();
  let rejoin: AbortController | undefined;
  const iface = env.VIGIL_WIFI_INTERFACE ?? 'wlan0';
  const country = env.VIGIL_WIFI_COUNTRY ?? 'US';

  async function getStation(): Promise<Station> {
    if (station) return station;
    const [{ WpaSupplicantStation }, { udhcpcCommand }] = await Promise.all([
      import('../../hw/wifi/station.js'),
      import('../../hw/wifi/dhcp.js'),
    ]);
    // busybox udhcpc with our own event script (Debian's busybox ships none)
    const dhcp = await udhcpcCommand(fs, paths, iface);
    station = new WpaSupplicantStation({
      paths,
      interface: iface,
      countryCode: country,
      logger: log,
      addressing: { dhcp },
    });
    return station;
  }

  async function resetDeps(dataDir: string) {
    const { RelayClient } = await import('../../protocol/relay-client.js');
    return {
      fs,
      logger: log,
      revokeRelayPhones: async (): Promise<number> => {
        const acct = await readRelayAccount(dataDir);
        if (!acct) return 0;
        const c = new RelayClient({ url: acct.url }).withToken(acct.token);
        const phones = await c.phones();
        for (const ph of phones) await c.removePhone(ph.phoneId);
        return phones.length;
      },
    };
  }
  let configChannel: RelayConfigChannel | undefined;
  let liveControl: { close(): Promise<void> } | undefined;
  let liveness: { stop(): void } | undefined;
  let stopHealth: (() => void) | undefined;
  let storageWiring: StorageWiring | undefined;
  let dataStorage: Storage | undefined;

  async function loadIdentity(dataDir: string): Promise<NonNullable<typeof identity>> {
    if (identity) return identity;
    const [{ readBundle }, { deriveIdentity }, { SECRETS_DIR }] = await Promise.all([
      import('../../protocol/provisioning-bundle.js'),
      import('../../protocol/identity.js'),
      import('../storage/storage.js'),
    ]);
    const bundle = await readBundle(join(dataDir, SECRETS_DIR));
    if (!bundle) {
      throw new VigilError(
        'ENOIDENTITY',
        `no provisioning bundle in ${join(dataDir, SECRETS_DIR)}: this unit was never provisioned`,
      );
    }
    const d = deriveIdentity(bundle.secret, bundle.deviceId);
    identity = {
      deviceId: bundle.deviceId,
      secret: bundle.secret,
      psk: { id: d.mlsPskId, secret: d.mlsPsk },
      services: {
        ...(bundle.relay ? { relay: bundle.relay } : {}),
        ...(bundle.ota ? { ota: bundle.ota } : {}),
      },
    };
    return identity;
  }

  /** The phone's choice > relay.url of the config > the bundle (firmware/config/services.ts). */
  async function effectiveRelay(dataDir: string): Promise<ResolvedRelay | undefined> {
    const id = await loadIdentity(dataDir);
    relayInUse = resolveRelay(config, id.services, await readRelayOverride(fs, dataDir));
    return relayInUse;
  }

  async function openMls(dataDir: string): Promise<MlsHub> {
    if (mls) return mls;
    const id = await loadIdentity(dataDir);
    const [{ MlsHub }, { LazyMlsProfile }] = await Promise.all([
      import('../mls/hub.js'),
      import('../../protocol/mls-profile.js'),
    ]);
    mls = await MlsHub.open({
      dir: join(dataDir, 'mls'),
      fs,
      deviceId: id.deviceId,
      profile: new LazyMlsProfile(),
      logger: log,
    });
    return mls;
  }

  async function readRelayAccount(dataDir: string): Promise<RelayAccountFile | undefined> {
    const raw = await fs.readIfExists(join(dataDir, RELAY_ACCOUNT_FILE));
    return raw ? (JSON.parse(raw.toString('utf8')) as RelayAccountFile) : undefined;
  }

  /**
   * Join the saved home network unless already associated (boot of a paired hub, or the
   * pairing window closed); retried in the background every minute until it works.
   */
  function rejoinHomeWifi(dataDir: string): void {
    if (rejoin || station?.connected === true) return;
    const ctrl = new AbortController();
    rejoin = ctrl;
    void (async () => {
      const raw = await fs.readIfExists(join(dataDir, WIFI_FILE));
      if (!raw) {
        log.warn('paired, but no home Wi-Fi saved: staying offline (pair again to set it)');
        return;
      }
      const creds = JSON.parse(raw.toString('utf8')) as { ssid: string; passphrase: string };
      const { sleep } = await import('./executor.js');
      for (let attempt = 1; !ctrl.signal.aborted; attempt++) {
        const st = await getStation();
        if (st.connected) return;
        try {
          await st.join(creds);
          log.info('joined the home network', { ssid: creds.ssid, attempt });
          return;
        } catch (e) {
          log.warn('cannot join the home network; retrying in a minute', {
            ssid: creds.ssid,
            error: e,
          });
          await st.leave().catch(() => undefined);
        }
        await sleep(60_000, ctrl.signal).catch(() => undefined);
      }
    })().finally(() => {
      if (rejoin === ctrl) rejoin = undefined;
    });
  }

  /**
   * One attempt of the relay meeting: register the device account (unless it exists at the
   * relay in use), then offer the phone's pairing token there.
   */
  async function meetOnce(dataDir: string, token: string | undefined, signal: AbortSignal) {
    const relay = await effectiveRelay(dataDir);
    if (relay === undefined)
      throw new VigilError(
        'ENORELAY',
        'no relay: none in the config file (relay.url), the provisioning bundle, or from the phone',
      );
    const id = await loadIdentity(dataDir);
    const [{ registerAndOffer }, { revokePendingRelayPhones }] = await Promise.all([
      import('../pairing/rendezvous.js'),
      import('../pairing/factory-reset.js'),
    ]);
    await revokePendingRelayPhones(await resetDeps(dataDir), dataDir, signal);
    await registerAndOffer({
      relay,
      deviceId: id.deviceId,
      saved: await readRelayAccount(dataDir),
      save: (acct) =>
        fs.writeFileAtomic(
          join(dataDir, RELAY_ACCOUNT_FILE),
          JSON.stringify(acct) + '\n',
          'relay-account',
        ),
      token,
      signal,
      http: contacts.relayHttp(),
    });
  }

  /** The meeting in `vigil hub status` (services.relay.meeting). */
  function meetingStatus(m: RelayMeeting): Record<string, unknown> {
    const st = m.status();
    return {
      state: st.state,
      failures: st.failures,
      lastError: st.lastError ?? null,
      nextAttemptAt:
        st.nextAttemptAt === undefined ? null : new Date(st.nextAttemptAt).toISOString(),
    };
  }

  async function relayMeeting(dataDir: string): Promise<RelayMeeting> {
    if (meeting) return meeting;
    const { RelayMeeting } = await import('../pairing/rendezvous.js');
    const file = join(dataDir, RENDEZVOUS_FILE);
    meeting ??= new RelayMeeting({
      attempt: (token, signal) => meetOnce(dataDir, token, signal),
      store: {
        load: async () => {
          const raw = await fs.readIfExists(file);
          return raw ? (JSON.parse(raw.toString('utf8')) as { token: string }).token : undefined;
        },
        save: (token) => fs.writeFileAtomic(file, JSON.stringify({ token }) + '\n', 'rendezvous'),
        clear: () => fs.remove(file),
      },
      logger: log,
    });
    return meeting;
  }

  /** Uplink sending, the config group over the relay, escrow, live view, liveness, health. */
  async function startRelayServices(dataDir: string, acct: RelayAccountFile): Promise<void> {
    const up = uplink;
    const kept = retention;
    const hub = mls;
    const id = identity;
    if (!up || !kept || !hub || !id) return; // services stopped meanwhile
    up.connect(acct.url, { deviceId: acct.deviceId, token: acct.token });
    up.start();
    const [{ RelayConfigChannel }, { RelayClient }] = await Promise.all([
      import('../mls/config-channel.js'),
      import('../../protocol/relay-client.js'),
    ]);
    const channel = new RelayConfigChannel({
      hub,
      client: new RelayClient({ url: acct.url, token: acct.token, http: contacts.relayHttp() }),
      logger: log,
      stateDir: join(dataDir, 'config'),
      fs,
      onAcknowledged: (ids) => kept.markDelivered(ids),
    });
    configChannel = channel;
    channel.start();
    if (storageWiring && dataStorage)
      void storageWiring.start({
        storage: dataStorage,
        deviceId: id.deviceId,
        relay: acct,
        channel,
        phones: () => hub.phones.map((p) => p.phoneId),
      });
    // Journey 2 (docs/protocol.md): live view on request, sealed liveness beats and
    // health notices over the config group. Services run only with storage unlocked.
    const [
      { LiveControl },
      { HubLiveness },
      { sendHealthNotices },
      { sendMotionNotices },
      { answerPhoneRoster },
    ] = await Promise.all([
      import('../media/live-control.js'),
      import('../mls/liveness.js'),
      import('../media/health-notices.js'),
      import('../media/motion-notices.js'),
      import('../mls/phone-roster.js'),
    ]);
    liveControl = new LiveControl({ channel, media: () => media, logger: log });
    if (media) {
      const stopHealthNotices = sendHealthNotices({ media, channel, logger: log });
      // motion notices in the notification group: the relay pushes them (issue #17)
      // with a privacy mode's scheduled notices they ride its notice lane (issue #20)
      const stopMotionNotices = sendMotionNotices({
        media,
        channel: uplink?.scheduledNotices ?? channel,
        logger: log,
      });
      // the load governor (issue #21): only with the detector on, which it slows and pauses
      let stopGovernor: (() => void) | undefined;
      if (config.detection.enabled) {
        const [{ startLoadGovernor }, { SysfsLoadSensor }] = await Promise.all([
          import('../media/governor.js'),
          import('../../hw/load/load-sensor.js'),
        ]);
        const wired = startLoadGovernor({
          media,
          sensor: new SysfsLoadSensor(paths),
          channel,
          logger: log,
          limits: config.detection.governor,
        });
        stopGovernor = () => {
          wired.stop();
        };
      }
      stopHealth = () => {
        stopHealthNotices();
        stopMotionNotices();
        stopGovernor?.();
      };
    }
    // the phones page of an admin's viewer asks which phones are paired
    const stopRoster = answerPhoneRoster({ channel, phones: () => hub.phones, logger: log });
    const stopMediaNotices = stopHealth;
    stopHealth = () => {
      stopMediaNotices?.();
      stopRoster();
    };
    const beats = new HubLiveness({ channel, logger: log });
    beats.start();
    liveness = beats;
  }

  const services: ProductionServices = {
    get configChannel(): ConfigChannel | undefined {
      return configChannel;
    },

    async unlockStorage(signal: AbortSignal): Promise<UnlockResult> {
      const { createRealStorage } = await import('../storage/real.js');
      // storage area: phone unlock while locked, recovery escrow once services run
      const { StorageWiring } = await import('../storage/hub-wiring.js');
      storageWiring ??= new StorageWiring({ paths, fs, logger: deps.logger });
      const storage = await createRealStorage({
        paths,
        logger: deps.logger,
        env,
        fs,
        keySources: config.storage.keySources,
        dataDir: mountPoint,
        phone: storageWiring.phone,
      });
      dataStorage = storage;
      storage.onStatus((s) => {
        log.info('storage status', { status: s });
      });
      const r = await storage.unlockAndMount(signal);
      await storageWiring.unlocked(r);
      if (r.state === 'unlocked') return { ok: true, dataDir: r.mountPoint };
      const waitingFor = r.waitingFor.length > 0 ? r.waitingFor.join(' or ') : undefined;
      return {
        ok: false,
        reason: `${r.reason}: ${r.detail}`,
        ...(waitingFor ? { waitingFor } : {}),
      };
    },

    async isPaired(dataDir: string): Promise<boolean> {
      const { resumeFactoryReset } = await import('../pairing/factory-reset.js');
      await resumeFactoryReset(await resetDeps(dataDir), dataDir);
      return (await openMls(dataDir)).phones.length > 0;
    },

    async startPairing(
      dataDir: string,
      _signal: AbortSignal,
      emit: (e: Event) => void,
      reason: 'first-boot' | 'button' | 'factory-reset' = 'first-boot',
    ): Promise<void> {
      await pairingStopped;
      if (pairing) {
        // already set up (a button press while the window is open or closed): reopen
        await pairing.open(reason);
        return;
      }
      rejoin?.abort();
      rejoin = undefined;
      const hub = await openMls(dataDir);
      const id = await loadIdentity(dataDir);
      const [
        { PairingController, DEFAULT_HOTSPOT },
        { PairingResponder },
        { HostapdHotspot },
        { TimeSync, buildTimeOf },
        { DateCommandClock },
      ] = await Promise.all([
        import('../pairing/controller.js'),
        import('../mls/pairing-responder.js'),
        import('../../hw/wifi/hotspot.js'),
        import('../pairing/time-sync.js'),
        import('../../hw/clock/system-clock.js'),
      ]);
      const timeSync = new TimeSync({
        clock: deps.clock ?? new DateCommandClock(),
        buildTimeMs: buildTimeOf(),
        logger: log.child('clock'),
      });
      const ctl = new PairingController({
        identity: { deviceId: id.deviceId, secret: id.secret },
        hotspot: new HostapdHotspot({ paths, logger: log }),
        station: await getStation(),
        settings: { ...DEFAULT_HOTSPOT, interface: iface, countryCode: country },
        newResponder: () =>
          new PairingResponder({ hub, devicePsk: id.psk, onTimeSync: timeSync.onPhoneTime }),
        handleConfig: (bytes) => hub.handleConfig(bytes),
        saveCredentials: async (c) => {
          await fs.writeFileAtomic(
            join(dataDir, WIFI_FILE),
            JSON.stringify({ ssid: c.ssid, passphrase: c.passphrase }) + '\n',
            'home-wifi',
          );
          if (c.relay) {
            await saveRelayOverride(fs, dataDir, c.relay);
            log.info('the phone chose the relay', { url: c.relay.url });
          }
        },
        meetAtRelay: async (token: string) => (await relayMeeting(dataDir)).start(token),
        logger: log,
      });
      ctl.on('handoff', (h) => {
        if (h.ok) emit({ type: 'paired' });
        else emit({ type: 'pairing-failed', reason: `${h.code}: ${h.message}` });
      });
      ctl.on('closed', (why) => {
        // paired: the handoff reports; cancelled: the supervisor closed it itself
        if (why === 'timeout' || why === 'failures')
          emit({ type: 'pairing-closed', reason: why, paired: hub.phones.length > 0 });
      });
      pairing = ctl;
      await ctl.open(reason);
    },

    stopPairing(): Promise<void> {
      const ctl = pairing;
      pairing = undefined;
      const before = pairingStopped;
      pairingStopped = before
        .then(() => ctl?.close())
        .catch((e: unknown) => {
          log.warn('the pairing window did not close cleanly', { error: e });
        });
      return pairingStopped;
    },

    async factoryReset(dataDir: string, signal: AbortSignal): Promise<void> {
      const { factoryReset } = await import('../pairing/factory-reset.js');
      // the pending meeting's token belongs to the pairing being erased (its file goes too)
      await meeting?.stop();
      rejoin?.abort();
      rejoin = undefined;
      await station?.leave();
      mls = undefined;
      await factoryReset(await resetDeps(dataDir), dataDir, signal);
    },

    async startServices(
      dataDir: string,
      _signal: AbortSignal,
      emit: (e: Event) => void,
    ): Promise<void> {
      await pairingStopped;
      if (uplink) return; // already running (a phone was added through the pairing window)
      const hub = await openMls(dataDir);
      const id = await loadIdentity(dataDir);
      rejoinHomeWifi(dataDir);
      const acct = await readRelayAccount(dataDir);
      const relay = await effectiveRelay(dataDir);
      relayAccountElsewhere = acct && relay && relay.url !== acct.url ? acct.url : undefined;
      if (relayAccountElsewhere !== undefined)
        log.warn('the relay account is at another relay than the one chosen; pair again to move', {
          account: relayAccountElsewhere,
          chosen: relay?.url,
        });
      const [
        { createUplink },
        { MlsItemSealer },
        { createMediaPipeline },
        { V4l2Camera, discoverCameras },
        { LibV4l2Binding },
        { DropLedger },
        { HubRetention, policyFromConfig, backlogFromConfig },
        { UtilLinuxBlockDevices },
      ] = await Promise.all([
        import('../uplink/uplink.js'),
        import('../mls/sealer.js'),
        import('../media/pipeline.js'),
        import('../../hw/camera/v4l2-camera.js'),
        import('../../hw/camera/v4l2-binding.js'),
        import('../uplink/drop-ledger.js'),
        import('../storage/hub-retention.js'),
        import('../../hw/luks/block.js'),
      ]);
      const dropLedger = await DropLedger.open(dataDir, fs, log);
      hub.dropReporter = (phoneId) => dropLedger.take(phoneId);
      // without a relay account (the meeting at the end of pairing is still being retried)
      // the uplink queues durably and the hub records; the relay part starts once met
      uplink = await createUplink({
        http: contacts.relayHttp(),
        relayUrl: acct?.url,
        credentials: acct ? { deviceId: acct.deviceId, token: acct.token } : undefined,
        stateDir: join(dataDir, 'uplink'),
        fs,
        logger: log,
        // privacy mode (issue #20): clips, thumbnails and notices on a schedule, as MLS
        // application messages in each phone's config / notification group
        ...privacyUplinkOption(config.privacy, hub, () => configChannel),
        // retention (docs/storage.md): a bounded backlog; what it drops is told to every phone
        backlog: {
          ...backlogFromConfig(config.retention),
          onDropped: async (drops) => {
            await dropLedger.record(
              drops.length,
              hub.phones.map((p) => p.phoneId),
            );
            await retention?.discard(drops.map((d) => d.itemId));
          },
        },
      });
      const up = uplink;
      const blocks = new UtilLinuxBlockDevices();
      retention = await HubRetention.open({
        root: dataDir,
        fs,
        stats: () => blocks.fsStats(dataDir),
        logger: log,
        policy: policyFromConfig(config.retention),
        intervalMs: config.retention.intervalMinutes * 60_000,
        enforceBacklog: () => up.enforceBacklog(),
      });
      const kept = retention;
      retention.start();
      const binding = new LibV4l2Binding();
      const devicePath = config.camera.device ?? (await discoverCameras(binding))[0]?.path;
      if (devicePath === undefined) throw new VigilError('ENOCAMERA', 'no V4L2 camera found');
      const sealer = new MlsItemSealer({
        hub,
        sink: kept.sink(uplink),
        deviceId: id.deviceId,
        logger: log,
      });
      // motion settings and the PIR line from the config (firmware/supervisor/pir.ts)
      const [{ OnoffGpio }, { openPir, motionFromConfig }] = await Promise.all([
        import('../../hw/gpio/gpio.js'),
        import('./pir.js'),
      ]);
      const pir = await openPir({
        config: config.motion,
        gpio: new OnoffGpio(paths),
        paths,
        logger: log,
      });
      // optional audio (docs/media.md, "Audio"): the ALSA device from the config
      const { enabled: audioOn, device: audioDevice, ...audioCfg } = config.audio;
      const audio = audioOn
        ? new (await import('../../hw/audio/alsa-audio.js')).AlsaAudioSource({
            device: audioDevice,
          })
        : undefined;
      media = createMediaPipeline({
        camera: new V4l2Camera({ binding, path: devicePath }),
        sealer,
        ...(pir ? { pir } : {}),
        ...(audio ? { audio } : {}),
        logger: log,
        encoderPreference: config.camera.encoder,
        config: {
          encoder: {
            width: config.camera.width,
            height: config.camera.height,
            fps: config.camera.fps,
            bitrateKbps: config.camera.bitrateKbps,
          },
          clips: {
            preRollS: config.camera.preRollSeconds,
            postRollS: config.camera.postRollSeconds,
          },
          motion: motionFromConfig(config.motion),
          audio: { enabled: audioOn, ...audioCfg },
          detection: config.detection,
        },
        runDir: paths.host('/run/vigil'),
      });
      media.on((e) => {
        if (e.type === 'state' && e.state === 'failed')
          emit({ type: 'child-crash-loop', child: 'media' });
        if (e.type === 'motion-start') deps.onRecording?.(true);
        if (e.type === 'motion-end') deps.onRecording?.(false);
      });
      await media.start();
      if (acct) {
        await startRelayServices(dataDir, acct);
        // a restart between the registration and the offer: offer the waiting token now
        if (await fs.readIfExists(join(dataDir, RENDEZVOUS_FILE)))
          void (await relayMeeting(dataDir)).start().catch((e: unknown) => {
            log.error('the relay meeting did not start', { error: e });
          });
        return;
      }
      // paired, but the relay was never met (unreachable at the handoff, or a restart since):
      // meet it in the background (the persisted pairing token, else the account alone)
      log.warn('paired, but no relay account yet: recording locally, meeting the relay');
      const m = await relayMeeting(dataDir);
      const onMet = (): void => {
        void (async () => {
          const now = await readRelayAccount(dataDir);
          if (uplink !== up || !now) return; // services stopped meanwhile
          await startRelayServices(dataDir, now);
        })().catch((e: unknown) => {
          log.error('relay services did not start after the meeting', { error: e });
          emit({ type: 'child-crash-loop', child: 'relay' });
        });
      };
      // met while these services were starting (the handoff's attempt): connect now
      if (m.state === 'met') onMet();
      else {
        m.once('met', onMet);
        if (m.state !== 'trying' && m.state !== 'waiting')
          void m.start().catch((e: unknown) => {
            log.error('the relay meeting did not start', { error: e });
          });
      }
    },

    async shutdown(): Promise<void> {
      // the home network's wpa_supplicant outlives pairing and services; at exit it goes
      await meeting?.stop();
      rejoin?.abort();
      rejoin = undefined;
      await station?.leave();
    },

    async stopServices(): Promise<void> {
      await meeting?.stop();
      rejoin?.abort();
      rejoin = undefined;
      liveness?.stop();
      stopHealth?.();
      await liveControl?.close();
      liveness = undefined;
      stopHealth = undefined;
      liveControl = undefined;
      await media?.stop();
      await storageWiring?.stop();
      await configChannel?.stop();
      await retention?.stop();
      await uplink?.stop();
      if (mls) mls.dropReporter = undefined;
      retention = undefined;
      configChannel = undefined;
      media = undefined;
      uplink = undefined;
    },

    applyUpdate(version: string): Promise<'committed' | 'rolled-back'> {
      // The OTA agent runs the whole install/trial/commit cycle itself and reports the
      // outcome through `update-finished`; a bare request to apply is refused.
      log.warn('update requested outside the OTA agent; refused', { version });
      return Promise.resolve('rolled-back');
    },

    status: () => ({
      ...(identity ? { deviceId: identity.deviceId } : {}),
      relay: {
        url: relayInUse?.url ?? null,
        ...(relayInUse ? { source: relayInUse.source } : {}),
        ...(relayAccountElsewhere !== undefined ? { accountAt: relayAccountElsewhere } : {}),
        lastContact: contacts.lastRelayContact,
        ...(meeting ? { meeting: meetingStatus(meeting) } : {}),
      },
      ...(media ? { media: media.status() } : {}),
      ...(uplink ? { uplink: uplink.status() } : {}),
      privacy: {
        mode: config.privacy.mode,
        notices: config.privacy.notices,
        estimate: describeCost(privacyCost(config.privacy)),
      },
      ...(retention ? { retention: retention.status() } : {}),
      ...(configChannel ? { configChannel: configChannel.status() } : {}),
      ...(pairing ? { pairing: { serving: pairing.serving, port: pairing.port ?? null } } : {}),
    }),
  };
  return Promise.resolve(services);
}
