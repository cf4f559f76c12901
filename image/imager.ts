/**
 * A Raspberry Pi Imager repository file (`os_list`), written next to the
 * image so Imager can offer it: *Choose OS → Use custom* accepts the .json,
 * or `rpi-imager --repo <url of the .json>` lists it as an OS.
 *
 * Pure: the build (image/build.ts) passes sizes and hashes it already has.
 * No `init_format`: Imager then offers no OS customisation, which Vigil does
 * not use (no login; Wi-Fi comes through pairing).
 */
import type { BoardName } from './boards.js';

export interface ImagerInput {
  readonly board: BoardName;
  /** Vigil's version (package.json). */
  readonly version: string;
  /** The image's timestamps: release_date is this day (UTC). */
  readonly sourceDateEpoch: number;
  /** Where the .img.xz will be downloaded from (absolute URL, or the file name beside the .json). */
  readonly url: string;
  /** Size and SHA-256 of the .img (what Imager writes). */
  readonly extractSize: number;
  readonly extractSha256: string;
  /** Size and SHA-256 of the download (.img.xz). */
  readonly downloadSize: number;
  readonly downloadSha256: string;
}

export interface ImagerOs {
  readonly name: string;
  readonly description: string;
  readonly url: string;
  readonly release_date: string;
  readonly extract_size: number;
  readonly extract_sha256: string;
  readonly image_download_size: number;
  readonly image_download_sha256: string;
  readonly devices: readonly string[];
}

/** Imager's device tags for the boards a 64-bit Vigil image boots on. */
const DEVICES: Readonly<Record<BoardName, readonly string[]>> = {
  'rpi-arm64': ['pi5-64bit', 'pi4-64bit', 'pi3-64bit'],
  'qemu-amd64': [],
};

const SHA256 = /^[0-9a-f]{64}$/;

/** The repository JSON for one image; throws on input Imager would reject. */
export function imagerRepository(i: ImagerInput): { os_list: ImagerOs[] } {
  if (!SHA256.test(i.extractSha256) || !SHA256.test(i.downloadSha256))
    throw new Error('imager: sha256 must be 64 lower-case hex digits');
  for (const [k, v] of [
    ['extractSize', i.extractSize],
    ['downloadSize', i.downloadSize],
    ['sourceDateEpoch', i.sourceDateEpoch],
  ] as const)
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`imager: ${k} must be a whole number`);
  return {
    os_list: [
      {
        name: `Vigil ${i.version}`,
        description:
          'Private end-to-end encrypted camera hub. No login: pair with the Vigil app using the QR label.',
        url: i.url,
        release_date: new Date(i.sourceDateEpoch * 1000).toISOString().slice(0, 10),
        extract_size: i.extractSize,
        extract_sha256: i.extractSha256,
        image_download_size: i.downloadSize,
        image_download_sha256: i.downloadSha256,
        devices: DEVICES[i.board],
      },
    ],
  };
}
