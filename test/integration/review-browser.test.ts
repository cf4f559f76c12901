// The review page on the real local run (real hub, MLS, simulated camera, relay), in
// real headless Chromium: the status strip shows what the hub has (state, simulated
// camera, software encoder, storage) and the relay contact; the development "Test event"
// button records a real clip that arrives in the list; the phones page lists the phones the
// hub has paired (a second one paired over the production frame server), makes an invite,
// and removes the second phone.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PairingInitiator } from '../../app/e2ee/pairing-initiator.js';
import { PairingClient } from '../../app/pair/client.js';
import { MemoryLogger } from '../../base/logger.js';
import { launchChromium } from '../../dev/fixtures/browser.js';
import { startLocalRun } from '../../dev/local-run.js';
import { DurableFs } from '../../hw/os/fs.js';
import { deriveIdentity } from '../../protocol/identity.js';
import { LazyMlsProfile } from '../../protocol/mls-profile.js';
import { parseQrPayload } from '../../protocol/qr-payload.js';
import { RelayClient } from '../../protocol/relay-client.js';

// Under a loaded CI machine the simulated camera and x264 run slowly: be patient.
t.setTimeout(600_000);
const PATIENCE = { timeout: 180_000 };

t.test('the review page on the local run', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-review-run-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const logger = new MemoryLogger('dev');
  const lr = await startLocalRun({
    dir,
    logger,
    viewerPort: 0,
    pairingPort: 0,
    width: 320,
    height: 240,
    fps: 10,
    motion: { intervals: [] }, // no motion: the only event is the test event
    preRollS: 1,
    postRollS: 1,
  });
  t.teardown(() => lr.stop());
  const { browser, close } = await launchChromium();
  t.teardown(close);
  const page = await browser.newPage();
  page.on('dialog', (d) => {
    void d.accept();
  });
  await page.goto(lr.viewerUrl);
  await page.waitForFunction(
    () => /last contact/.test(document.getElementById('st-relay')?.textContent ?? ''),
    undefined,
    PATIENCE,
  );

  await t.test('the status strip shows the real hub', async (t) => {
    const strip = async (id: string) => (await page.locator(`#st-${id}`).textContent()) ?? '';
    t.match(await strip('hub'), /^running/);
    t.match(await strip('camera'), /simulated.*320x240/);
    t.match(await strip('encoder'), /^software/, 'the software encoder path, and why');
    t.equal(await page.locator('#st-encoder').getAttribute('data-level'), 'warn');
    t.match(await strip('storage'), /GB free of .* GB \(plain directory \(development\)\)/);
  });

  await t.test('Test event records a clip that arrives in the list', async (t) => {
    t.equal(await page.locator('li.event').count(), 0, 'no motion, no events yet');
    await page.click('#test-btn');
    await page.waitForFunction(
      () => document.querySelectorAll('li.event').length === 1,
      undefined,
      PATIENCE,
    );
    t.equal(await page.locator('section.day h3').first().textContent(), 'Today');
    await page.click('li.event .pick');
    await page.waitForFunction(
      () => (document.getElementById('video') as HTMLVideoElement).currentTime > 0.3,
      undefined,
      PATIENCE,
    );
    t.pass('and it plays');
  });

  await t.test('phones page: the hub lists its phones; invite; remove', async (t) => {
    // a second phone pairs over the production frame server (as in pairing-port.test.ts)
    const pairing = lr.pairing;
    if (!pairing) throw new Error('the run serves no pairing port');
    const parsed = parseQrPayload((await readFile(pairing.labelFile, 'utf8')).trim());
    if (!parsed.ok) throw new Error(parsed.reason);
    const d = deriveIdentity(parsed.value.secret, parsed.value.deviceId);
    const client = await PairingClient.connect(pairing.host, pairing.port);
    let second: string;
    try {
      const phone = await client.pair(
        new PairingInitiator({
          dir: join(dir, 'phone-2', 'e2ee'),
          fs: new DurableFs(),
          profile: new LazyMlsProfile(),
          psk: { id: d.mlsPskId, secret: d.mlsPsk },
        }),
      );
      second = phone.phoneId;
      const token = await client.sendCredentials(phone, 'home-net', 'correct horse battery');
      await new RelayClient({ url: lr.relayUrl }).claimRendezvous(token);
    } finally {
      client.close();
    }

    await page.click('#nav-phones');
    await page.waitForFunction(
      () => document.body.dataset.phonesLoaded === '2',
      undefined,
      PATIENCE,
    );
    const rows = await page.locator('#phone-list li').allTextContents();
    t.match(rows[0], new RegExp(`^${lr.phone.phoneId}this phoneadmin`), 'this phone, the admin');
    t.match(
      rows[1],
      new RegExp(`^${second}(admin)?Remove$`),
      'the second phone (paired from the label: an admin too), removable',
    );

    await page.click('#invite-btn');
    await page.waitForFunction(
      () => !(document.getElementById('invite-out') as HTMLElement).hidden,
      undefined,
      PATIENCE,
    );
    const text = await page.locator('#invite-text').inputValue();
    const m = /^vigil app pair --invite '(.*)'$/.exec(text);
    const invite = (JSON.parse(m?.[1] ?? '{}') as { invite?: { deviceId?: string } }).invite;
    t.equal(invite?.deviceId, parsed.value.deviceId, "an invite from this run's hub");

    await page.click(`button[aria-label="Remove phone ${second}"]`);
    await page.waitForFunction(
      () => /^Removed phone /.test(document.getElementById('phones-status')?.textContent ?? ''),
      undefined,
      PATIENCE,
    );
    await page.reload();
    await page.waitForFunction(
      () => document.body.dataset.phonesLoaded === '1',
      undefined,
      PATIENCE,
    );
    t.equal(await page.locator('#phone-list li').count(), 1, 'the hub no longer lists it');
  });
});
