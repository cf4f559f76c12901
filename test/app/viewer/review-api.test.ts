// The viewer as a daily review page, in real headless Chromium (Debian's chromium through
// playwright-core): rows stay put across refreshes and the selection survives them and a
// reload (#item=ID), events are grouped by day, download and delete (acknowledged at the
// relay, removed here), the status strip (hub, camera, encoder, storage, relay contact and
// "unreachable since"), the development test-event button, the phones page, keyboard use and
// accessible names, and a phone-sized screen (390x844: list and player both usable; the
// screenshot is kept in .ci/out/screenshots/ or $VIGIL_ARTIFACTS_DIR).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { DurableFs } from '../../../hw/os/fs.js';
import { SILENT } from '../../../base/logger.js';
import { createUplink } from '../../../firmware/uplink/uplink.js';
import { StaticKeyCrypto } from '../../../app/crypto.js';
import { ItemStore } from '../../../app/store.js';
import { Syncer } from '../../../app/sync.js';
import { RelayContact } from '../../../app/relay-contact.js';
import { PhonesError } from '../../../app/phones.js';
import type { PhoneEntry } from '../../../app/phones.js';
import { startViewer } from '../../../app/viewer/server.js';
import type { DeviceReport, PhonesPort } from '../../../app/viewer/review-api.js';
import type { RelayClient } from '../../../protocol/relay-client.js';
import { relayWith, tempDir } from '../../relay/fixtures.js';
import { launchChromium } from '../../../dev/fixtures/browser.js';
import { H264_CODEC, StaticKeySealer, makeClip, makeJpeg, sealWhole } from '../fixtures.js';

// every page wait has launchChromium's generous default timeout (PAGE_TIMEOUT_MS)
t.setTimeout(600_000);
const ARTIFACTS =
  process.env.VIGIL_ARTIFACTS_DIR ?? join(process.cwd(), '.ci', 'out', 'screenshots');

/** A relay client that never acknowledges: items stay at the relay until the viewer deletes them. */
function keepingClient(c: RelayClient): RelayClient {
  return {
    list: (q: Parameters<RelayClient['list']>[0]) => c.list(q),
    read: (seq: number, o: Parameters<RelayClient['read']>[1]) => c.read(seq, o),
    readAll: (seq: number) => c.readAll(seq),
    postUp: (g: string, b: Uint8Array) => c.postUp(g, b),
    ack: () => Promise.resolve(),
  } as unknown as RelayClient;
}

const rowBox = (page: Page, itemId: string) =>
  page.locator(`li.event[data-item-id="${itemId}"]`).boundingBox();

t.test('the viewer as a daily review page', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-review-');
  const { relay, device, phones } = await relayWith(`${dir}/relay`, 1);
  const uplink = await createUplink({
    relayUrl: relay.url,
    credentials: { deviceId: device.id, token: device.token },
    stateDir: `${dir}/q`,
    fs: new DurableFs(),
    logger: SILENT,
    backoff: { initialMs: 50, maxMs: 500 },
  });
  uplink.start();
  let relayUp = true;
  const closers: (() => Promise<void>)[] = [
    () => uplink.stop(),
    () => (relayUp ? relay.close() : Promise.resolve()),
    cleanup,
  ];
  t.teardown(async () => {
    for (const c of closers) await c();
  });
  const key = randomBytes(32);
  const sealer = new StaticKeySealer(key, uplink);
  const clip = await makeClip(2);
  const jpeg = await makeJpeg();
  const crypto = new StaticKeyCrypto(key);
  const store = new ItemStore(`${dir}/app`, new DurableFs());
  const client = phones[0]!.client;
  const syncer = new Syncer({ client: keepingClient(client), crypto, store, logger: SILENT });
  const seal = async (startedAt: number, thumb = false): Promise<string> => {
    if (thumb) await sealWhole(sealer, { kind: 'thumbnail', startedAt, codec: 'image/jpeg' }, jpeg);
    const id = await sealWhole(sealer, { kind: 'clip', startedAt, codec: H264_CODEC }, clip, 4);
    await uplink.drained();
    return id;
  };

  // three days: today, yesterday, and two days ago (local time, as the page groups)
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  // ten and five minutes ago (or just after midnight): apart from each other and from the
  // events added below, so each clip has its own thumbnail
  const t0 = Math.max(Date.now() - 600_000, midnight.getTime() + 60_000);
  const today = [await seal(t0, true), await seal(t0 + 300_000)];
  const yesterday = await seal(midnight.getTime() - 12 * 3600_000);
  const older = await seal(midnight.getTime() - 36 * 3600_000);
  await syncer.syncOnce();
  t.equal((await store.list()).filter((i) => i.summary.kind === 'clip').length, 4);

  // the ports a real run wires (dev/local-run.ts): hub report, test event, phones
  const report: DeviceReport = {
    state: 'running',
    summary: 'recording on motion',
    camera: 'simulated (simulated) YUYV 640x480@15',
    encoder: 'software (no hardware encoder found)',
    storage: { path: '/data', freeBytes: 12.5e9, totalBytes: 50e9, kind: 'LUKS2 open' },
  };
  const testEvents: string[] = [];
  const phoneList: PhoneEntry[] = [
    { phoneId: 'aa11', self: true, admin: true, pairedAt: 1 },
    { phoneId: 'bb22', self: false, admin: false, pairedAt: 2 },
  ];
  const removed: string[] = [];
  const phonesPort: PhonesPort = {
    admin: true,
    list: () => Promise.resolve(phoneList),
    invite: () =>
      Promise.resolve({
        invite: {
          t: 'invite',
          requestId: '0123456789abcdef',
          deviceId: device.id,
          pskId: 'cHNrLWlk',
          psk: 'c2VjcmV0',
          expiresAt: Date.now() + 15 * 60_000,
        },
      }),
    remove: (id) => {
      const i = phoneList.findIndex((p) => p.phoneId === id);
      if (i < 0) return Promise.reject(new PhonesError('ETIMEOUT', `no phone ${id}`));
      phoneList.splice(i, 1);
      removed.push(id);
      return Promise.resolve();
    },
  };
  const contact = new RelayContact();
  const viewer = await startViewer({
    store,
    crypto,
    client,
    logger: SILENT,
    contact,
    device: () => report,
    testEvent: async () => {
      testEvents.push(await seal(Date.now()));
      await syncer.syncOnce();
    },
    phones: phonesPort,
  });
  closers.unshift(() => viewer.close());
  // the viewer's sync loop (with the relay contact record), as `vigil app view` runs it
  const syncing = new AbortController();
  const loop = new Syncer({
    client: keepingClient(client),
    crypto,
    store,
    logger: SILENT,
    contact,
    backoff: { initialMs: 100, maxMs: 500 },
  }).run(syncing.signal);
  closers.unshift(async () => {
    syncing.abort();
    await loop;
  });
  const { browser, close } = await launchChromium();
  closers.unshift(close);
  const page = await browser.newPage();
  await page.setViewportSize({ width: 1200, height: 800 });
  page.on('dialog', (d) => {
    void d.accept();
  });
  await page.goto(viewer.url);
  // the list, and the status strip above it filled in (its text sets where the rows are)
  await page.waitForFunction(
    () =>
      document.querySelectorAll('li.event').length === 4 &&
      /last contact/.test(document.getElementById('st-relay')?.textContent ?? ''),
  );

  await t.test('grouped by day, newest first', async (t) => {
    const days = await page.locator('section.day').evaluateAll((ss) =>
      ss.map((s) => ({
        heading: s.querySelector('h3')?.textContent ?? '',
        labelled: s.getAttribute('aria-labelledby') === s.querySelector('h3')?.id,
        items: [...s.querySelectorAll('li.event')].map((li) => (li as HTMLElement).dataset.itemId),
      })),
    );
    t.equal(days.length, 3);
    t.same(
      days.map((d) => d.heading.slice(0, 9)),
      ['Today', 'Yesterday', days[2]?.heading.slice(0, 9)],
    );
    t.notMatch(days[2]?.heading, /Today|Yesterday/, 'an older day is named by its date');
    t.same(days[0]?.items, [today[1], today[0]], 'newest first within the day');
    t.same(days[1]?.items, [yesterday]);
    t.same(days[2]?.items, [older]);
    t.ok(
      days.every((d) => d.labelled),
      'each day group is labelled by its heading',
    );
    t.equal(
      await page.locator(`li.event[data-item-id="${today[0]}"] img`).getAttribute('alt'),
      '',
      'the thumbnail is decorative (the button is named)',
    );
  });

  await t.test('selection and rows are stable across refreshes', async (t) => {
    await page.click(`li.event[data-item-id="${yesterday}"] .pick`);
    await page.waitForFunction(
      () => (document.getElementById('video') as HTMLVideoElement).currentTime > 0.2,
    );
    // the pointer rests on a row while a new event arrives
    await page.hover(`li.event[data-item-id="${older}"] .pick`);
    const before = await rowBox(page, older);
    const fresh = await seal(Date.now());
    await syncer.syncOnce();
    await page.waitForFunction(() => document.body.dataset.pending === '1');
    t.same(await rowBox(page, older), before, 'the row under the pointer did not move');
    t.equal(await page.locator('li.event').count(), 4, 'the new event waits');
    t.match(await page.locator('#new-events').textContent(), /1 new event/);
    // two more refreshes with the pointer still there: nothing moved, the selection stays
    const ticks = Number(await page.evaluate(() => document.body.dataset.refreshes));
    await page.waitForFunction((n) => Number(document.body.dataset.refreshes) >= n + 2, ticks);
    t.same(await rowBox(page, older), before, 'still in place after more refreshes');
    t.equal(
      await page.locator('li.event.active').getAttribute('data-item-id'),
      yesterday,
      'the selection survives the refresh',
    );
    t.equal(
      await page.locator('li.event.active .pick').getAttribute('aria-current'),
      'true',
      'and is announced (aria-current)',
    );
    // the pointer leaves: the new event is listed, the selection stays
    await page.mouse.move(1190, 790);
    await page.waitForFunction(() => document.querySelectorAll('li.event').length === 5);
    t.equal(
      await page
        .locator('section.day')
        .first()
        .locator('li.event')
        .first()
        .getAttribute('data-item-id'),
      fresh,
      'the new event is listed first',
    );
    t.equal(await page.locator('li.event.active').getAttribute('data-item-id'), yesterday);
    t.match(page.url(), new RegExp(`#item=${yesterday}$`), 'the URL carries the selection');

    await page.reload();
    await page.waitForFunction(
      (id) => document.querySelector('li.event.active')?.getAttribute('data-item-id') === id,
      yesterday,
    );
    t.match(
      await page.locator('#video').getAttribute('src'),
      /^api\/items\/\d+\/media$/,
      'after a reload the same clip is selected and loaded',
    );
  });

  await t.test('select by item id: the hash and vigilSelect, also before it arrives', async (t) => {
    t.equal(await page.evaluate((id) => window.vigilSelect?.(id), older), true);
    t.equal(await page.locator('li.event.active').getAttribute('data-item-id'), older);
    // a notification names an item this phone has not fetched yet
    const later = await sealWhole(
      sealer,
      { kind: 'clip', startedAt: Date.now(), codec: H264_CODEC },
      clip,
    );
    await page.evaluate((id) => {
      location.hash = `#item=${id}`;
    }, later);
    await page.waitForFunction((id) => document.body.dataset.wanted === id, later);
    await uplink.drained();
    await syncer.syncOnce();
    await page.waitForFunction(
      (id) => document.querySelector('li.event.active')?.getAttribute('data-item-id') === id,
      later,
    );
    t.pass('the item is selected when it arrives');
  });

  await t.test('keyboard: arrows move and play, Delete deletes', async (t) => {
    const first = page.locator('li.event .pick').first();
    await first.focus();
    await page.keyboard.press('ArrowDown');
    const second = await page.locator('li.event').nth(1).getAttribute('data-item-id');
    t.equal(await page.locator('li.event.active').getAttribute('data-item-id'), second);
    t.equal(
      await page.evaluate(() =>
        document.activeElement?.closest('li.event')?.getAttribute('data-item-id'),
      ),
      second,
      'focus follows',
    );
    await page.keyboard.press('End');
    t.equal(await page.locator('li.event.active').getAttribute('data-item-id'), older);
    await page.keyboard.press('Home');
    t.equal(
      await page.locator('li.event.active').getAttribute('data-item-id'),
      await page.locator('li.event').first().getAttribute('data-item-id'),
    );
    const n = await page.locator('li.event').count();
    const doomed = await page.locator('li.event.active').getAttribute('data-item-id');
    await page.keyboard.press('Delete');
    await page.waitForFunction((k) => document.querySelectorAll('li.event').length === k, n - 1);
    t.equal(await page.locator(`li.event[data-item-id="${doomed}"]`).count(), 0, 'deleted');
    t.equal(
      await page.evaluate(() => document.activeElement?.classList.contains('pick')),
      true,
      'focus moves to the next row',
    );
  });

  await t.test('download', async (t) => {
    const [dl] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`li.event[data-item-id="${yesterday}"] a.dl`),
    ]);
    t.match(dl.suggestedFilename(), /^vigil-\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.mp4$/);
    const path = await dl.path();
    t.same(await readFile(path), clip, 'the download is the decrypted clip');
  });

  await t.test('delete: acknowledged at the relay and removed here', async (t) => {
    const seqOf = async (id: string) =>
      (await store.list()).find((i) => i.summary.itemId === id)?.seq;
    const seq = await seqOf(today[0]!);
    if (seq === undefined) throw new Error('the clip is not stored');
    const thumb = (await store.list()).find((i) => i.summary.kind === 'thumbnail')?.seq;
    const atRelay = async () => (await client.list({})).items.map((i) => i.seq);
    t.ok((await atRelay()).includes(seq), 'the relay still holds it (not acknowledged yet)');
    await page.click(`li.event[data-item-id="${today[0]}"] button.del`);
    // the delete's answer, not the row's absence: a 2 s refresh between the clip's removal
    // and its thumbnail's can drop the row before the server has finished
    await page.waitForFunction(
      (id) =>
        !document.querySelector(`li.event[data-item-id="${id}"]`) &&
        (document.querySelector('#status')?.textContent ?? '').startsWith('Deleted the clip at '),
      today[0],
    );
    t.notOk((await atRelay()).includes(seq), 'acknowledged at the relay');
    t.notOk((await atRelay()).includes(thumb ?? -1), 'its thumbnail too');
    t.equal(await seqOf(today[0]!), undefined, 'removed from the local store');
    t.equal(await store.get(thumb ?? -1), undefined, 'with its thumbnail');
    t.match(await page.locator('#status').textContent(), /^Deleted the clip at /);
  });

  await t.test('an event list asked for before a delete does not bring the row back', async (t) => {
    // on a slow machine the 2 s refresh can be answered after a delete it was asked before
    const doomed = today[1]!;
    let fetched!: () => void;
    const listFetched = new Promise<void>((r) => (fetched = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let delivered!: () => void;
    const staleDelivered = new Promise<void>((r) => (delivered = r));
    await page.route('**/api/events', async (route) => {
      const response = await route.fetch(); // the list as it is now: the row still in it
      fetched();
      await released;
      await route.fulfill({ response });
      delivered();
    });
    await listFetched;
    await page.click(`li.event[data-item-id="${doomed}"] button.del`);
    await page.waitForFunction(
      (id) => !document.querySelector(`li.event[data-item-id="${id}"]`),
      doomed,
    );
    // from now on: does the row come back, or wait behind "1 new event"?
    await page.evaluate((id) => {
      const w = window as unknown as { vigilBack: number };
      w.vigilBack = 0;
      new MutationObserver(() => {
        if (
          document.querySelector(`li.event[data-item-id="${id}"]`) ||
          document.body.dataset.pending !== '0'
        )
          w.vigilBack++;
      }).observe(document.body, { subtree: true, childList: true, attributes: true });
    }, doomed);
    const ticks = Number(await page.evaluate(() => document.body.dataset.refreshes));
    release();
    await staleDelivered;
    await page.unroute('**/api/events');
    // a fresh list after the stale one has been handled
    await page.waitForFunction((n) => Number(document.body.dataset.refreshes) >= n + 1, ticks);
    t.equal(
      await page.evaluate(() => (window as unknown as { vigilBack: number }).vigilBack),
      0,
      'the stale list neither re-added the row nor held it as new',
    );
    t.equal(await page.locator(`li.event[data-item-id="${doomed}"]`).count(), 0);
  });

  await t.test('test event (development)', async (t) => {
    const n = await page.locator('li.event').count();
    t.equal(await page.locator('#test-btn').isVisible(), true, 'the button is shown');
    await page.mouse.move(1190, 790);
    await page.click('#test-btn');
    await page.waitForFunction((k) => document.querySelectorAll('li.event').length === k + 1, n);
    t.equal(testEvents.length, 1, 'the hub was asked for an event');
    t.equal(await page.locator(`li.event[data-item-id="${testEvents[0]}"]`).count(), 1);
    // without the development port there is no button, and the route refuses
    const plain = await startViewer({ store, crypto, logger: SILENT });
    const other = await browser.newPage();
    await other.goto(plain.url);
    await other.waitForFunction(() => document.body.dataset.status === 'loaded');
    t.equal(await other.locator('#test-btn').isHidden(), true, 'no button outside development');
    const r = await other.evaluate(async () => {
      const x = await fetch('api/test-event', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      });
      return x.status;
    });
    t.equal(r, 404);
    await other.close();
    await plain.close();
    // that viewer's access cookie (same host, another port) did not log this page out
    t.equal(
      await page.evaluate(async () => (await fetch('api/events')).status),
      200,
      'two viewers on one host keep their own cookies',
    );
  });

  await t.test('phones page: list, invite, remove', async (t) => {
    await page.click('#nav-phones');
    await page.waitForFunction(() => document.body.dataset.phonesLoaded === '2');
    t.equal(await page.locator('#review').isHidden(), true, 'the events give way');
    t.equal(await page.locator('#nav-phones').getAttribute('aria-current'), 'page');
    const items = await page.locator('#phone-list li').allTextContents();
    t.match(items[0], /aa11.*this phone.*admin/);
    t.match(items[1], /bb22/);
    await page.click('#invite-btn');
    await page.waitForFunction(
      () => !(document.getElementById('invite-out') as HTMLElement).hidden,
    );
    const text = await page.locator('#invite-text').inputValue();
    t.match(text, /^vigil app pair --invite '\{"invite":\{"t":"invite",/);
    t.equal(
      await page.locator('label[for="invite-text"]').count(),
      1,
      'the invite box has a label',
    );
    await page.click('button[aria-label="Remove phone bb22"]');
    await page.waitForFunction(() => document.querySelectorAll('#phone-list li').length === 1);
    t.same(removed, ['bb22'], 'the hub was asked to remove it');
    t.match(await page.locator('#phones-status').textContent(), /Removed phone bb22/);
    await page.click('#nav-events');
    await page.waitForFunction(() => document.body.dataset.view === 'events');
  });

  await t.test('accessible names and keyboard reach', async (t) => {
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll('button, a, video, textarea, input')]
        .filter((el) => !(el as HTMLElement).closest('[hidden]'))
        .filter((el) => {
          const name =
            el.getAttribute('aria-label') ??
            (el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent : null) ??
            el.textContent;
          return !name.trim();
        })
        .map((el) => el.outerHTML.slice(0, 80)),
    );
    t.same(unnamed, [], 'every control has a name');
    t.equal(await page.locator('nav[aria-label="Views"]').count(), 1);
    t.equal(await page.locator('#strip[aria-label="Hub status"]').count(), 1);
    // Tab from the top reaches the list's buttons
    await page.evaluate(() => {
      (document.activeElement as HTMLElement | null)?.blur();
    });
    let reached = false;
    for (let i = 0; i < 20 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(
        () => document.activeElement?.classList.contains('pick') ?? false,
      );
    }
    t.ok(reached, 'Tab reaches the event list');
  });

  await t.test('status strip: hub, camera, encoder, storage, relay', async (t) => {
    await page.waitForFunction(() =>
      /last contact/.test(document.getElementById('st-relay')?.textContent ?? ''),
    );
    const strip = async (id: string) => (await page.locator(`#st-${id}`).textContent()) ?? '';
    t.match(await strip('hub'), /^running \(recording on motion\)/);
    t.match(await strip('camera'), /simulated .*640x480/);
    t.match(await strip('encoder'), /^software \(no hardware encoder found\)/);
    t.equal(await page.locator('#st-encoder').getAttribute('data-level'), 'warn');
    t.match(await strip('storage'), /^12\.5 GB free of 50\.0 GB \(LUKS2 open\)/);
    t.equal(await page.locator('#st-camera').getAttribute('title'), await strip('camera'));
    // the strip's height does not depend on what it says (placeholders, today's text, a long
    // reason): the rows below never move when the status arrives or changes
    const heights = await page.evaluate(() => {
      const el = document.getElementById('strip') as HTMLElement;
      const cells = [...el.querySelectorAll('dd')];
      const saved = cells.map((c) => c.textContent);
      const h = (text: (i: number) => string | null): number => {
        cells.forEach((c, i) => (c.textContent = text(i)));
        return el.getBoundingClientRect().height;
      };
      const r = [
        h((i) => saved[i] ?? ''),
        h(() => '…'),
        h(() =>
          'unreachable since 07/12/2026, 10:42:17 (ECONNREFUSED: connect refused) '.repeat(3),
        ),
      ];
      cells.forEach((c, i) => (c.textContent = saved[i] ?? ''));
      return r;
    });
    t.same(new Set(heights).size, 1, `one strip height whatever it says: ${heights.join(', ')} px`);
    // the relay goes away: the sync loop fails and the strip says since when
    await relay.close();
    relayUp = false;
    await page.waitForFunction(() => document.body.dataset.relay === 'unreachable');
    t.match(await strip('relay'), /^unreachable since .+ \(/);
    t.equal(await page.locator('#st-relay').getAttribute('data-level'), 'bad');
    const s = contact.status();
    t.ok(
      s.lastContactAt !== null &&
        s.unreachableSince !== null &&
        s.unreachableSince >= s.lastContactAt,
    );
  });

  await t.test('a phone-sized screen (390x844): list and player both usable', async (t) => {
    const small = await launchChromium({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    t.teardown(small.close);
    const phone = await small.browser.newPage();
    await phone.goto(viewer.url.replace(/#.*$/, ''));
    await phone.waitForFunction(() => document.querySelectorAll('li.event').length > 2);
    await phone.tap('li.event:nth-child(1) .pick');
    await phone.waitForFunction(() => document.querySelector('li.event.active') !== null);
    await mkdir(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'viewer-phone-390x844.png');
    await phone.screenshot({ path: shot });
    const png = await readFile(shot);
    t.equal(png.readUInt32BE(16), 780, 'screenshot saved at 2x: 780 px wide');
    t.equal(png.readUInt32BE(20), 1688, 'and 1688 px high');
    const video = await phone.locator('#video').boundingBox();
    const list = await phone.locator('#events').boundingBox();
    const firstRow = await phone.locator('li.event').first().boundingBox();
    if (!video || !list || !firstRow) throw new Error('player or list not laid out');
    t.ok(
      video.width >= 300 && video.height >= 150,
      `the player is big enough (${video.width}x${video.height})`,
    );
    t.ok(video.y >= 0 && video.y + video.height <= 844, 'the player is on screen');
    t.ok(
      firstRow.y + firstRow.height <= 844,
      `a row is on screen too (its bottom at ${firstRow.y + firstRow.height})`,
    );
    t.ok(list.y >= video.y + video.height, 'the list starts below the player (no overlap)');
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth);
    t.ok(overflow <= 390, `nothing wider than the screen (${overflow})`);
    const tiny = await phone.evaluate(() =>
      [...document.querySelectorAll('header button, header a, li.event button, li.event a')]
        .filter((el) => !(el as HTMLElement).closest('[hidden]') && !(el as HTMLElement).hidden)
        .map((el) => {
          const r = el.getBoundingClientRect();
          return { el: el.getAttribute('aria-label') ?? el.textContent, w: r.width, h: r.height };
        })
        .filter((b) => b.w < 44 || b.h < 44),
    );
    t.same(tiny, [], 'every tap target is at least 44x44 px');
    // the player stays in view while the list scrolls under it
    await phone.evaluate(() => {
      window.scrollBy(0, 400);
    });
    const after = await phone.locator('#video').boundingBox();
    t.ok(after && after.y >= 0 && after.y < 844, 'the player stays on screen while scrolling');
    await phone.close();
  });
});

declare global {
  interface Window {
    vigilSelect?: (itemId: string) => boolean;
  }
}
