import t from 'tap';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { SecretFiles, shred } from '../../../hw/luks/secret-files.js';

void t.test('key files live briefly in a private tmpfs directory', async (t) => {
  const shm = await mkdtemp('/dev/shm/vigil-secret-test-');
  t.teardown(() => rm(shm, { recursive: true, force: true }));
  const sf = new SecretFiles({ baseDir: join(shm, 'keys') });
  const secret = Buffer.from('super secret key material');
  const seen = await sf.withFile(secret, async (p) => {
    t.same(await readFile(p), secret);
    t.equal((await stat(p)).mode & 0o777, 0o600, 'file 0600');
    t.equal((await stat(dirname(p))).mode & 0o777, 0o700, 'dir 0700');
    return p;
  });
  t.ok(seen.startsWith(join(shm, 'keys')));
  t.same(await readdir(join(shm, 'keys')), [], 'gone afterwards');
  await t.rejects(
    sf.withFile(secret, async () => {
      throw new Error('boom');
    }),
    /boom/,
  );
  t.same(await readdir(join(shm, 'keys')), [], 'gone after a failure too');
});

void t.test('refuses a directory that is not on tmpfs', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-secret-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fsType = (await import('node:fs/promises')).statfs;
  const st = await fsType(dir);
  if (st.type === 0x01021994) {
    t.pass('tmpdir is tmpfs here; nothing to refuse');
    return;
  }
  await t.rejects(
    new SecretFiles({ baseDir: join(dir, 'k') }).withFile(Buffer.from('x'), async () => 1),
    { code: 'ESECRETFILE' },
  );
  t.equal(
    await new SecretFiles({ baseDir: join(dir, 'k'), requireTmpfs: false }).withFile(
      Buffer.from('x'),
      async () => 1,
    ),
    1,
  );
  await shred(join(dir, 'missing'), 4);
});
