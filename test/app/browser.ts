/** Debian's Chromium, headless, driven by playwright-core (never a downloaded browser). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext } from 'playwright-core';

export const CHROMIUM = process.env.VIGIL_CHROMIUM ?? '/usr/bin/chromium';

/** A fresh profile directory per launch (playwright passes it as --user-data-dir). */
export async function launchChromium(): Promise<{
  browser: BrowserContext;
  close: () => Promise<void>;
}> {
  const profile = await mkdtemp(join(tmpdir(), 'vigil-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Split a fragmented MP4 into [init segment, fragment, fragment, ...] at top-level box boundaries. */
export function splitFmp4(mp4: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  let start = 0;
  while (off + 8 <= mp4.length) {
    const size = mp4.readUInt32BE(off);
    const type = mp4.toString('ascii', off + 4, off + 8);
    if (type === 'moof' && off > start) {
      out.push(mp4.subarray(start, off));
      start = off;
    }
    if (size < 8) break;
    off += size;
  }
  out.push(mp4.subarray(start));
  return out;
}
