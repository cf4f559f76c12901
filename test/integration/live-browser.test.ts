// Journey 2 in a real browser against the real local run (dev/local-run.ts:
// relay, supervisor-run hub with the media pipeline on the simulated camera,
// companion and viewer): clicking Live asks the hub over the config group and
// the page plays moving video; stopping the hub raises the authenticated
// offline alert (sealed hub-alive beats stop) and restarting it clears it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { JsonLogger } from '../../base/logger.js';
import {
  frameLatency,
  launchChromium,
  recordPresentedFrames,
  startLiveInViewer,
} from '../../dev/fixtures/browser.js';
import { startLocalRun } from '../../dev/local-run.js';
import { SMALL_IDLE } from '../fixtures/local-run.js';

// The simulated camera and x264 are slow on a loaded CI machine: waits are for events, generous.
t.setTimeout(600_000);
const PATIENCE = { timeout: 240_000 };

t.test('local run in Chromium: live on request, offline alert raised and cleared', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-journey2-'));
  // log lines as events: the test waits for the hub to say its live session ended
  const lines: string[] = [];
  const waiters = new Set<(l: string) => void>();
  const logger = new JsonLogger('dev', {
    level: 'debug',
    write: (l) => {
      lines.push(l);
      for (const w of waiters) w(l);
    },
  });
  const logged = (re: RegExp): Promise<string> =>
    new Promise((resolve) => {
      const hit = lines.find((l) => re.test(l));
      if (hit !== undefined) {
        resolve(hit);
        return;
      }
      const w = (l: string): void => {
        if (!re.test(l)) return;
        waiters.delete(w);
        resolve(l);
      };
      waiters.add(w);
    });
  const aliveIntervalMs = 1000;
  const offlineAfterMs = 4000;
  const lr = await startLocalRun({
    dir,
    logger,
    // no motion: the hub is idle until a phone asks for live view
    ...SMALL_IDLE,
    aliveIntervalMs,
    offlineAfterMs,
    // frames carry their capture time (what bench/live-glass-to-glass.ts measures with)
    frameClock: true,
  });
  const { browser, close } = await launchChromium();
  t.teardown(async () => {
    await close();
    await lr.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const page = await browser.newPage();
  await page.goto(lr.viewerUrl);

  // ---- live on request ----------------------------------------------------------------
  await page.evaluate(() => {
    const el = document.getElementById('status') as HTMLElement;
    const seen: string[] = [];
    (window as unknown as { seen: string[] }).seen = seen;
    new MutationObserver(() => seen.push(el.textContent)).observe(el, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  const startedMs = await startLiveInViewer(page, 0.2, PATIENCE.timeout);
  t.comment(`first live frame played ${(startedMs / 1000).toFixed(1)} s after the click`);
  const t1 = await page.evaluate(
    () => (document.getElementById('video') as HTMLVideoElement).currentTime,
  );
  await page.waitForFunction(
    (from) => (document.getElementById('video') as HTMLVideoElement).currentTime > from + 1,
    t1,
    PATIENCE,
  );
  t.pass('live video moves (currentTime advances by more than a second)');
  const frames = (await recordPresentedFrames(page, 320, 10, PATIENCE.timeout)).map((f) => ({
    ...f,
    ...frameLatency(f),
  }));
  const bad = frames.filter(
    (f, i) =>
      f.latency <= 0 ||
      f.latency > 120_000 ||
      // capture times follow the media timeline (a misread bit is off by 2^k ms)
      Math.abs(
        f.captured -
          (frames[0]?.captured ?? 0) -
          (f.mediaTime - (frames[0]?.mediaTime ?? 0)) * 1000,
      ) > 2000 ||
      (i > 0 && f.captured < (frames[i - 1]?.captured ?? 0)),
  );
  t.same(bad, [], 'each presented frame carries its capture time through encoder, relay and MSE');
  t.comment(
    `presented frames were ${frames.map((f) => `${Math.round(f.latency)} (${Math.round((f.bufferedEnd - f.mediaTime) * 1000)} buffered ahead)`).join(', ')} ms old (glass-to-glass)`,
  );
  const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
  t.same(seen.slice(0, 2), ['starting\u2026', 'live'], 'the page said "starting…", then "live"');
  t.equal(lr.media()?.status().live.sessions, 1, 'the hub runs one live session');

  // ---- stop: the page leaves live view (its stream closes), the viewer sends live-stop ----
  const ended = logged(/"msg":"stopping live session".*"why":"stopped by a phone"/);
  await page.evaluate(() => {
    // what choosing a clip or closing the page does: the page aborts its live stream
    (window as unknown as { stopLive(): void }).stopLive();
  });
  await ended;
  t.pass("the hub stopped the live session on the phone's live-stop (not the idle timer)");

  // ---- offline alert -------------------------------------------------------------------
  await page.waitForFunction(() => document.body.dataset.hubOffline === 'no', undefined, PATIENCE);
  t.pass('the hub is shown online (sealed hub-alive beats arrive)');
  const seenBefore = lr.link.status().lastSeenAt;
  t.ok(seenBefore !== null, 'the companion authenticated a hub-alive beat');
  await lr.stopHub();
  const stopped = Date.now();
  await page.waitForFunction(() => document.body.dataset.hubOffline === 'yes', undefined, PATIENCE);
  const raisedAfter = Date.now() - stopped;
  const st = lr.link.status();
  t.ok(st.offline, 'the companion raised the offline alert');
  t.ok(
    st.lastSeenAt !== null && Date.now() - st.lastSeenAt >= offlineAfterMs,
    'not before the threshold had passed since the last authenticated beat',
  );
  t.comment(`offline alert shown ${(raisedAfter / 1000).toFixed(1)} s after the hub stopped`);
  t.match(
    await page.locator('#alert').textContent(),
    /hub offline: last heard/,
    'the page shows the alert',
  );

  await lr.startHub();
  await page.waitForFunction(() => document.body.dataset.hubOffline === 'no', undefined, PATIENCE);
  t.notOk(lr.link.status().offline, 'the alert clears when the hub is back');
  t.equal(await page.locator('#alert').isHidden(), true, 'the page hides the alert');

  const secret = lines.filter((l) => /"(psk|secret|token)":"(?!\[redacted\])/.test(l));
  t.same(secret, [], 'no secret fields in the logs');
});
