// Audio (issue #21 item 4) in a real browser against the real local run (dev/local-run.ts with
// `audio: true`: the simulated camera's tone is encoded AAC next to the video): the viewer lists
// the event with its audio mark, plays the decrypted clip with its sound decoded and the audio
// indicator shown (which unmutes), then plays live view through Media Source Extensions with a
// codec string that names mp4a.40.2, indicator shown again.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { launchChromium, startLiveInViewer } from '../../dev/fixtures/browser.js';
import { startLocalRun } from '../../dev/local-run.js';

// The simulated camera, x264 and AAC are slow on a loaded CI machine: waits are for events.
t.setTimeout(600_000);
const PATIENCE = { timeout: 240_000 };

/** Audio bytes Chromium decoded for the page's video element (its own counter). */
function audioDecoded(): number {
  const v = document.getElementById('video') as HTMLVideoElement & {
    webkitAudioDecodedByteCount?: number;
  };
  return v.webkitAudioDecodedByteCount ?? -1;
}

t.test(
  'local run with audio in Chromium: clip and live play with sound, indicator shown',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-audio-browser-'));
    const logger = new MemoryLogger('dev');
    const lr = await startLocalRun({
      dir,
      logger,
      viewerPort: 0,
      width: 320,
      height: 240,
      fps: 10,
      motion: { intervals: [[3, 5]], periodS: 3600 },
      preRollS: 1,
      postRollS: 1,
      audio: true,
    });
    const { browser, close } = await launchChromium();
    t.teardown(async () => {
      await close();
      await lr.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const page = await browser.newPage();
    await page.goto(lr.viewerUrl);

    // ---- the clip ----------------------------------------------------------------------
    await page.waitForSelector('li.event', PATIENCE);
    t.match(
      await page.locator('li.event').first().textContent(),
      /audio/,
      'the event list marks the clip as having audio',
    );
    t.ok(await page.locator('#audio').isHidden(), 'no indicator before anything plays');
    await page.click('li.event');
    await page.waitForFunction(
      () => {
        const v = document.getElementById('video');
        return v instanceof HTMLVideoElement && v.currentTime > 1;
      },
      undefined,
      PATIENCE,
    );
    t.pass('the clip plays (currentTime past 1 s)');
    t.ok(await page.locator('#audio').isVisible(), 'the audio indicator is shown');
    t.match(await page.locator('#audio').textContent(), /Audio \(muted/, 'and says it is muted');
    t.equal(await page.evaluate(() => document.body.dataset.audio), 'on');
    await page.waitForFunction(audioDecoded, undefined, PATIENCE);
    t.ok((await page.evaluate(audioDecoded)) > 0, 'Chromium decoded the clip’s AAC track');
    await page.click('#audio');
    t.equal(
      await page.evaluate(() => (document.getElementById('video') as HTMLVideoElement).muted),
      false,
      'the indicator unmutes',
    );
    t.match(await page.locator('#audio').textContent(), /Audio on/);

    // ---- live --------------------------------------------------------------------------
    const before = await page.evaluate(audioDecoded);
    const liveResponse = page.waitForResponse((r) => r.url().includes('/api/live'), PATIENCE);
    await startLiveInViewer(page, 1, PATIENCE.timeout);
    t.match(
      (await liveResponse).headers()['x-vigil-codec'],
      /^video\/mp4; codecs="avc1\.[0-9a-f]{6},mp4a\.40\.2"$/,
      'the live codec string names the AAC track (mp4a.40.2) for Media Source',
    );
    t.pass('live plays through Media Source Extensions');
    t.ok(await page.locator('#audio').isVisible(), 'the indicator is shown for live view');
    const status = await page.evaluate(() => document.getElementById('status')?.textContent ?? '');
    t.notMatch(status, /unsupported live codec/, 'the live codec (with mp4a.40.2) is supported');
    await page.waitForFunction(
      (b) => {
        const v = document.getElementById('video') as HTMLVideoElement & {
          webkitAudioDecodedByteCount?: number;
        };
        // the MSE source is a new blob: its decoded-audio counter starts again and must grow
        return v.src.startsWith('blob:') && (v.webkitAudioDecodedByteCount ?? 0) > 0 && b > 0;
      },
      before,
      PATIENCE,
    );
    t.pass('live audio is decoded');
    const services = lr.hub.status().services as {
      media?: { audio?: { active?: boolean; source?: string } };
    };
    t.match(
      services.media?.audio,
      { active: true, source: 'simulated:tone' },
      'the hub says audio is on',
    );
  },
);
