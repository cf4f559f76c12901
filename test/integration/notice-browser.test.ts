// Journey 2 in a real browser against the real local run (dev/local-run.ts):
// a motion event on the hub becomes a sealed notice (notification group), the
// companion opens it with MLS, and the open viewer page raises a browser
// notification (Notification API; permission granted through the browser
// context, the constructor observed from the page). Tapping it opens that
// clip: the in-page notification's click, the service worker's
// notificationclick with a viewer page open (a message to it) and without
// one (a new page at the clip's URL) each end with the clip selected and playing.
// The motion notice's real Web Push (from the local run's relay to a local RFC 8030
// service, handed to the service worker through DevTools) is shown by the worker
// with its clip, though the companion had already read the notice from its mailbox.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { loadAccount } from '../../app/account.js';
import { DurableFs } from '../../hw/os/fs.js';
import {
  launchChromium,
  viewerServiceWorker,
  waitForClipPlaying,
} from '../../dev/fixtures/browser.js';
import { startLocalRun } from '../../dev/local-run.js';
import { SMALL_IDLE } from '../fixtures/local-run.js';
import type { Page } from 'playwright-core';
import { decryptAes128gcm, newSubscriptionKeys, startPushService } from '../fixtures/web-push.js';

t.setTimeout(600_000);
const PATIENCE = { timeout: 240_000 };

t.test('local run in Chromium: a motion event raises a notification in the page', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-notice-'));
  const logger = new MemoryLogger('dev');
  const lr = await startLocalRun({
    dir,
    logger,
    // no scheduled motion: the test triggers one when the page is ready
    ...SMALL_IDLE,
  });
  const { browser, close } = await launchChromium();
  const service = await startPushService();
  t.teardown(async () => {
    await close();
    await lr.stop();
    await service.close();
    await rm(dir, { recursive: true, force: true });
  });
  const origin = new URL(lr.viewerUrl).origin;
  await browser.grantPermissions(['notifications'], { origin });
  // record every Notification the page creates (headless Chromium shows none on screen)
  await browser.addInitScript(() => {
    const Real = window.Notification;
    const made: { title: string; body: string }[] = [];
    const notes: Notification[] = [];
    Object.assign(window, { made, notes });
    class Recorded extends Real {
      constructor(title: string, opts?: NotificationOptions) {
        super(title, opts);
        made.push({ title, body: opts?.body ?? '' });
        notes.push(this);
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

  // a push endpoint registered through the viewer (headless Chromium has no push service:
  // a local RFC 8030 one stands in, and DevTools hands its messages to the service worker)
  const keys = newSubscriptionKeys();
  const viewerToken = new URL(lr.viewerUrl).searchParams.get('t') ?? '';
  const reg = await fetch(`${origin}/api/push/subscription?t=${viewerToken}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ endpoint: service.endpoint('/phone', [201]), keys: keys.json }),
  });
  t.equal(reg.status, 200, 'push endpoint registered through the viewer');

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

  // tapping the notification opens that clip
  const itemId = feed[0]?.notice?.itemId as string;
  await viewerServiceWorker(browser, PATIENCE.timeout);

  // a push message reaches the service worker (DevTools stands in for the push service,
  // which headless Chromium lacks): the worker has the viewer open it and shows the answer
  const cdp = await browser.newCDPSession(page);
  // a push to a registration whose worker is not active yet is dropped: wait for the page's
  // registration to be ready, then take the id of its activated version
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
  });
  const registrationId = await new Promise<string>((resolve) => {
    cdp.on('ServiceWorker.workerVersionUpdated', (e) => {
      const v = e.versions.find(
        (x) => x.scriptURL.startsWith(`${origin}/`) && x.status === 'activated',
      );
      if (v) resolve(v.registrationId);
    });
    void cdp.send('ServiceWorker.enable');
  });
  const account = await loadAccount(new DurableFs(), lr.appDir);
  const since = Date.UTC(2026, 0, 2, 3, 4, 5);
  const unseen = JSON.stringify({
    v: 1,
    t: 'unseen',
    deviceId: account?.deviceId,
    since,
    at: since + 1,
  });
  const deliver = (data: string) => () =>
    cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data });
  // read from the page's registration, not through a worker handle: Chromium may stop an
  // idle worker and start another for the push, and a stopped worker's handle never answers
  const shown = await persistentNotifications(page, (ns) => ns.length > 0, deliver(unseen));
  t.same(
    shown,
    [
      {
        title: 'Vigil: hub not seen (relay-reported)',
        body: `[relay-reported] relay-reported (not verified by the hub): the hub has not been seen since ${new Date(since).toISOString()}`,
        data: { itemId: null },
      },
    ],
    'the worker showed the relay-reported notice, labelled, naming no clip',
  );
  // the motion notice's real push (the relay's RFC 8291 message, decrypted as the browser
  // would): the worker has the viewer open it — the companion read it from its mailbox
  // already — and shows the motion notification naming the clip
  const motionPush = decryptAes128gcm((await service.next('/phone')).body, keys);
  const shownMotion = (
    await persistentNotifications(
      page,
      (ns) => ns.some((n) => n.title === 'Vigil: motion'),
      deliver(motionPush.toString('utf8')),
    )
  ).find((n) => n.title === 'Vigil: motion');
  t.match(
    shownMotion,
    { title: 'Vigil: motion', body: /^motion detected at /, data: { itemId } },
    'the worker showed the pushed motion notice, naming its clip (what a tap opens)',
  );
  await cdp.detach();
  await page.evaluate(() => {
    (window as unknown as { notes: Notification[] }).notes[0]?.dispatchEvent(new Event('click'));
  });
  await waitForClipPlaying(page, itemId, 0.5, PATIENCE.timeout);
  t.pass('the in-page notification opened its clip (selected, playing)');

  // the service worker's notificationclick, a viewer page open: it tells that page
  const page2 = await browser.newPage();
  await page2.goto(`${origin}/`); // the access token is in the cookie by now
  await page2.waitForFunction(
    () => document.body.dataset.events !== undefined,
    undefined,
    PATIENCE,
  );
  await page.close();
  const sw = await viewerServiceWorker(browser, PATIENCE.timeout);
  t.equal(
    await sw.evaluate(
      (id) => (self as unknown as { vigilOpenClip(id: string): Promise<string> }).vigilOpenClip(id),
      itemId,
    ),
    'message',
  );
  await waitForClipPlaying(page2, itemId, 0.5, PATIENCE.timeout);
  t.pass('the open page was told and plays the clip');

  // ... no viewer page open: a new window at the clip's URL, which selects and plays it
  const clipUrl = await sw.evaluate(
    (id) => (self as unknown as { vigilClipUrl(id: string): string }).vigilClipUrl(id),
    itemId,
  );
  t.equal(clipUrl, `${origin}/?clip=${itemId}`);
  await page2.close();
  const page3 = await browser.newPage();
  await page3.goto(clipUrl);
  await waitForClipPlaying(page3, itemId, 0.5, PATIENCE.timeout);
  t.pass('a page opened at the clip URL plays the clip');
});

interface Shown {
  readonly title: string;
  readonly body: string;
  readonly data: unknown;
}

/**
 * Deliver a push to the viewer's service worker through DevTools and return the
 * notifications it shows (its registration's persistent ones) once `until` holds for them,
 * polled from the page, which outlives the worker. DevTools' delivery is sometimes lost
 * (seen in about one suite run in three: no push event at all, while a repeat is shown at
 * once); a push the worker has not answered after a while is delivered again — both pushes
 * here are idempotent (one notification tag; the viewer answers a repeated MLS push with what
 * it said the first time).
 */
async function persistentNotifications(
  page: Page,
  until: (ns: readonly Shown[]) => boolean,
  deliver: () => Promise<unknown>,
): Promise<Shown[]> {
  // a deadline only to end a stuck test (waitForFunction cannot await the registration)
  const end = Date.now() + PATIENCE.timeout;
  const REDELIVER_MS = 20_000;
  let delivered = 0;
  for (;;) {
    if (Date.now() - delivered > REDELIVER_MS) {
      if (delivered !== 0)
        process.stderr.write('notice-browser: push not answered, delivered again\n');
      await deliver();
      delivered = Date.now();
    }
    const ns = await page.evaluate(async () => {
      const reg = await navigator.serviceWorker.ready;
      return (await reg.getNotifications()).map((n) => ({
        title: n.title,
        body: n.body,
        data: n.data as unknown,
      }));
    });
    if (until(ns)) return ns;
    if (Date.now() > end)
      throw new Error(`no such notification from the service worker: ${JSON.stringify(ns)}`);
    // the worker shows it after the push event's own work (an HTTP call to the viewer)
    await page.waitForTimeout(100);
  }
}
