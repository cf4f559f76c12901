/**
 * Delivery end to end on loopback, every part real: simulated camera ->
 * ffmpeg/libx264 fMP4 -> motion clip -> MLS sealer (epoch per item) -> durable
 * uplink -> relay (HTTP, files on disk) -> companion sync (MLS phone, local
 * store, delete-on-ack) -> viewer -> headless Chromium plays the clip.
 *
 * The relay is stopped while the clip is being recorded and uploaded, and comes
 * back after VIGIL_TEST_OUTAGE_MS (default 2 s: the one minute proves
 * nothing more, the uplink's backoff is capped and the mechanism is the same),
 * restarted from its data directory: nothing is lost, nothing duplicated.
 */
import t from 'tap';
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import { MemoryLogger, SILENT } from '../../base/logger.js';
import { createMediaPipeline } from '../../firmware/media/pipeline.js';
import type { MediaEvent, MediaPipeline } from '../../firmware/media/pipeline.js';
import { SimulatedCamera } from '../../hw/camera/simulated-camera.js';
import { createUplink } from '../../firmware/uplink/uplink.js';
import { startRelay } from '../../relay/server.js';
import type { RunningRelay } from '../../relay/server.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { loadMlsProfile } from '../../protocol/mls-profile.js';
import { devPairRelay, e2eeDir, saveAccount } from '../../app/account.js';
import { E2eeCrypto } from '../../app/e2ee-crypto.js';
import { ItemStore } from '../../app/store.js';
import { Syncer } from '../../app/sync.js';
import { startViewer } from '../../app/viewer/server.js';
import { command as appCommand } from '../../app/cli.js';
import {
  DEVICE_ID,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
} from '../../dev/fixtures/paired-hub.js';
import { tempDir } from '../relay/fixtures.js';
import { launchChromium } from '../../dev/fixtures/browser.js';

const OUTAGE_MS = Number(process.env.VIGIL_TEST_OUTAGE_MS ?? 2000);

function waitFor(
  p: MediaPipeline,
  pred: (e: MediaEvent) => boolean,
  ms = 240_000,
): Promise<MediaEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('timed out waiting for a media event'));
    }, ms);
    timer.unref();
    const off = p.on((e) => {
      if (pred(e)) {
        clearTimeout(timer);
        off();
        resolve(e);
      }
    });
  });
}

t.test(
  `a motion clip reaches the viewer and plays, across a ${OUTAGE_MS} ms relay outage`,
  async (t) => {
    const { dir: root, cleanup } = await tempDir('vigil-delivery-');
    const closers: (() => Promise<void>)[] = [cleanup];
    t.teardown(async () => {
      for (const c of closers) await c();
    });
    const appDir = join(root, 'app');
    const fs = new DurableFs();

    // pairing (MLS over the in-memory pairing transport; relay accounts by rendezvous)
    const profile = await loadMlsProfile();
    const hub = await openHub(profile, join(root, 'hub'));
    const paired = await pair({
      p: profile,
      hub,
      devicePsk: newDevicePsk(),
      phoneDir: e2eeDir(appDir),
    });
    if (!paired.phone) throw new Error('pairing failed');
    let relay: RunningRelay = await startRelay({ dataDir: join(root, 'relay'), logger: SILENT });
    const port = relay.port;
    closers.unshift(() => relay.close());
    const accounts = await devPairRelay(relay.url, DEVICE_ID);
    await saveAccount(fs, appDir, accounts.phone);

    // the hub side
    const hubLog = new MemoryLogger('hub');
    const uplink = await createUplink({
      relayUrl: relay.url,
      credentials: accounts.device,
      stateDir: join(root, 'uplink'),
      fs,
      logger: hubLog,
      backoff: { initialMs: 100, maxMs: 500 },
      requestTimeoutMs: 3000,
    });
    uplink.start();
    closers.unshift(() => uplink.stop());
    const camera = new SimulatedCamera({
      width: 160,
      height: 120,
      fps: 10,
      schedule: { intervals: [[2, 5]] },
    });
    const pipeline = createMediaPipeline({
      camera,
      sealer: sealerFor(hub, uplink),
      logger: SILENT,
      config: {
        encoder: {
          width: 160,
          height: 120,
          fps: 10,
          bitrateKbps: 150,
          softwarePreset: 'ultrafast',
          gopSeconds: 1,
        },
        motion: { quietMs: 800 },
        clips: { preRollS: 1, postRollS: 1 },
      },
    });
    closers.unshift(() => pipeline.stop());
    // the clip closes after the motion ends and its post-roll (asked for now: not missed)
    const clipClosed = waitFor(pipeline, (e) => e.type === 'clip-closed', 300_000);
    clipClosed.catch(() => undefined); // awaited below; a failure before that is reported first
    await pipeline.start();
    await waitFor(pipeline, (e) => e.type === 'motion-start');
    // the outage begins while the clip is being recorded and streamed
    await relay.close();
    const down = Date.now();
    // Stay down until the hub has clip bytes queued and has failed to send them (on a busy
    // machine the encoder may lag behind the motion events), and for at least OUTAGE_MS.
    const deadline = Date.now() + 240_000;
    while (!(uplink.status().state === 'backoff' && uplink.status().queuedSegments > 0)) {
      if (Date.now() > deadline)
        throw new Error('the uplink never queued anything during the outage');
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - down))));
    t.ok(
      uplink.status().queuedSegments > 0,
      `backlog kept on the hub during the outage (${uplink.status().queuedSegments} segments)`,
    );
    relay = await startRelay({ dataDir: join(root, 'relay'), logger: SILENT, port });
    await clipClosed;
    await pipeline.stop();
    await pipeline.idle();
    await uplink.drained();
    t.ok(
      hubLog.lines.some((l) => l.includes('upload failed; retrying')),
      'the uplink saw the outage',
    );

    // the companion: sync (MLS, in relay order), store, acknowledge
    const crypto = new E2eeCrypto(paired.phone);
    const store = new ItemStore(appDir, fs);
    const client = new RelayClient({ url: relay.url, token: accounts.phone.token });
    const sync = await new Syncer({ client, crypto, store, logger: SILENT }).syncOnce();
    const kinds = sync.stored.map((s) => s.summary.kind);
    t.ok(kinds.includes('clip'), `a clip arrived (${kinds.join(', ')})`);
    t.equal(
      new Set(sync.stored.map((s) => s.summary.itemId)).size,
      sync.stored.length,
      'no duplicates',
    );
    t.equal((await client.list({})).items.length, 0, 'everything acknowledged');
    t.equal(relay.core.stats().storedBytes, 0, 'the relay deleted what every phone acknowledged');

    // the CLI sees the same events (it reopens the MLS phone from the app directory)
    const out: string[] = [];
    const code = await appCommand.run({
      argv: ['list', '--json', '--dir', appDir],
      env: {},
      stdout: (s) => out.push(s),
      stderr: () => undefined,
    });
    t.equal(code, 0);
    const listed = JSON.parse(out.join('')) as { events: { seq: number }[] };
    t.ok(listed.events.length >= 1, 'vigil app list shows the event');
    const mp4 = join(root, 'clip.mp4');
    t.equal(
      await appCommand.run({
        argv: ['fetch', String(listed.events[0]!.seq), '-o', mp4, '--dir', appDir],
        env: {},
        stdout: () => undefined,
        stderr: () => undefined,
      }),
      0,
    );
    const file = await fs.readIfExists(mp4);
    t.ok(
      file && file.length > 1000 && file.subarray(4, 8).toString() === 'ftyp',
      'vigil app fetch wrote a decrypted MP4',
    );

    // the viewer in Chromium
    const viewer = await startViewer({ store, crypto, client, logger: SILENT });
    closers.unshift(() => viewer.close());
    const { browser, close } = await launchChromium();
    closers.unshift(close);
    const page = await browser.newPage();
    await page.goto(viewer.url);
    await page.waitForSelector('li.event');
    await page.click('li.event');
    await page.waitForFunction(() => {
      const v = document.getElementById('video');
      return v instanceof HTMLVideoElement && v.currentTime > 0.3;
    });
    t.pass('the motion clip plays in the viewer');
  },
);
