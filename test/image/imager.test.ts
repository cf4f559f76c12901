import t from 'tap';
import { imagerRepository } from '../../image/imager.js';

const base = {
  board: 'rpi-arm64',
  version: '1.2.3',
  sourceDateEpoch: 1_767_225_600, // 2026-01-01T00:00:00Z
  url: 'vigil-rpi-arm64.img.xz',
  extractSize: 2_147_483_648,
  extractSha256: 'a'.repeat(64),
  downloadSize: 400_000_000,
  downloadSha256: 'b'.repeat(64),
} as const;

void t.test('os_list entry in the shape Raspberry Pi Imager reads', async (t) => {
  const r = imagerRepository(base);
  t.same(r, {
    os_list: [
      {
        name: 'Vigil 1.2.3',
        description:
          'Private end-to-end encrypted camera hub. No login: pair with the Vigil app using the QR label.',
        url: 'vigil-rpi-arm64.img.xz',
        release_date: '2026-01-01',
        extract_size: 2_147_483_648,
        extract_sha256: 'a'.repeat(64),
        image_download_size: 400_000_000,
        image_download_sha256: 'b'.repeat(64),
        devices: ['pi5-64bit', 'pi4-64bit', 'pi3-64bit'],
      },
    ],
  });
  t.notOk('init_format' in r.os_list[0]!, 'no OS customisation offered');
  t.equal(JSON.stringify(imagerRepository(base)), JSON.stringify(r), 'pure: same input, same JSON');
});

void t.test('input Imager would reject is refused', async (t) => {
  t.throws(() => imagerRepository({ ...base, extractSha256: 'xyz' }), /sha256/);
  t.throws(() => imagerRepository({ ...base, downloadSha256: 'B'.repeat(64) }), /sha256/);
  t.throws(() => imagerRepository({ ...base, extractSize: -1 }), /extractSize/);
  t.throws(() => imagerRepository({ ...base, downloadSize: 1.5 }), /downloadSize/);
});
