// Journey 2 in a real browser against the real local run (dev/local-run.ts):
// a motion event on the hub becomes a sealed notice (notification group), the
// companion opens it with MLS, and the open viewer page raises a browser
// notification (Notification API; permission granted through the browser
// context, the constructor observed from the page).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { launchChromium } from '../../dev/fixtures/browser.js';
import { startLocalRun } from '../../dev/local-run.js';

t.setTimeout(600_000);
const PATIENCE = { timeout: 240_000 };

t.test('local run in Chromium: a motion event raises a notification in the page', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-notice-'));
  const logger = new MemoryLogger('dev');
  const lr = await startLocalRun({
    dir,
    logger,
    viewerPort: 0,
    width: 320,
    height: 240,
    fps: 10,
    // no scheduled motion: the test triggers one when the page is ready
    motion: { intervals: [], periodS: 3600 },
  });
  const { browser, close } = await launchChromium();
  t.teardown(async () => {
    await close();
    await lr.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const origin = new URL(lr.viewerUrl).origin;
  await browser.grantPermissions(['notifications'], { origin });
  // record every Notification the page creates (headless Chromium shows none on screen)
  await browser.addInitScript(() => {
    const Real = window.Notification;
    const made: { title: string; body: string }[] = [];
    (window as unknown as { made: typeof made }).made = made;
    class Recorded extends Real {
      constructor(title: string, opts?: NotificationOptions) {
        super(title, opts);
        made.push({ title, body: opts?.body ?? '' });
      }
    }
    Object.defineProperty(window, 'Notification', { value: Recorded, configurable: true });
  });
  const page = await browser.newPage();
  await page.goto(lr.viewerUrl);
  t.equal(await page.evaluate(() => Notification.permission), 'granted');
  // the page has taken its notice cursor: what arrives now is raised
  await page.waitForFunction(
    () => document.body.dataset.noticeCursor !== undefined,
    undefined,
    PATIENCE,
  );

  lr.media()?.trigger(3000);
  await page.waitForFunction(
    () => (window as unknown as { made: unknown[] }).made.length > 0,
    undefined,
    PATIENCE,
  );
  const made = await page.evaluate(
    () => (window as unknown as { made: { title: string; body: string }[] }).made,
  );
  t.equal(made[0]?.title, 'Vigil: motion', 'a browser notification for the motion event');
  t.match(made[0]?.body, /^motion detected at /);
  const feed = lr.notices.since(0).notices;
  t.equal(feed[0]?.trusted, true, 'the notice came sealed by the hub (MLS)');
  t.match(feed[0]?.notice, { kind: 'motion', itemId: /^[0-9a-f]+$/ });
  t.match(
    await page.locator('#notices li').first().textContent(),
    /^Vigil: motion: motion detected at /,
    'and the page lists it',
  );
});
