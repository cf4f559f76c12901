import t from 'tap';
import {
  chooseCipher,
  cpuHasAes,
  memTotalKiB,
  passphrasePbkdf,
} from '../../../firmware/storage/params.js';

void t.test('AES detection from /proc/cpuinfo', async (t) => {
  t.equal(cpuHasAes('processor\t: 0\nflags\t\t: fpu vme sse2 aes avx2\n'), true, 'x86 flags');
  t.equal(
    cpuHasAes('processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n'),
    true,
    'Pi 5 (A76)',
  );
  t.equal(
    cpuHasAes('processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n'),
    false,
    'Pi 4 (A72 without crypto)',
  );
  t.equal(cpuHasAes('flags: vaes_like\n'), false, 'whole words only');
  t.equal(cpuHasAes(''), false);
  t.equal(chooseCipher('Features\t: fp asimd crc32\n'), 'adiantum');
  t.equal(chooseCipher('flags\t: aes\n'), 'aes-xts');
  t.equal(chooseCipher('flags\t: aes\n', 'adiantum'), 'adiantum', 'explicit choice wins');
});

void t.test('argon2id sized to the board', async (t) => {
  t.equal(memTotalKiB('MemTotal:        437000 kB\nMemFree: 1 kB\n'), 437000);
  t.equal(memTotalKiB('nothing'), undefined);
  t.same(
    passphrasePbkdf(437000, 4),
    { type: 'argon2id', memoryKiB: 109250, parallel: 4, iterTimeMs: 2000 },
    '512 MB board: a quarter of RAM',
  );
  t.match(
    passphrasePbkdf(8_000_000, 8),
    { memoryKiB: 131072, parallel: 4 },
    'capped at 128 MiB and 4 lanes',
  );
  t.match(passphrasePbkdf(100_000, 1), { memoryKiB: 32768, parallel: 1 }, 'floor of 32 MiB');
  t.match(passphrasePbkdf(undefined, 0), { memoryKiB: 131072, parallel: 1 });
});
