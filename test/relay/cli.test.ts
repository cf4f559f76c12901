import t from 'tap';
import { UsageError } from '../../base/command.js';
import { command } from '../../relay/cli.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { tempDir } from './fixtures.js';
import { freePort } from '../../dev/fixtures/net.js';

const ctx = (argv: string[], err: string[] = [], out: string[] = []) => ({
  argv,
  env: {},
  stdout: (s: string) => out.push(s),
  stderr: (s: string) => err.push(s),
});

t.test('bad options are usage errors', async (t) => {
  for (const argv of [
    ['--nope'],
    ['--port'],
    ['--port', 'x'],
    ['--port', '70000'],
    ['--backend', 'ftp'],
    ['--backend', 's3'],
    ['--tls-cert', 'a.pem'],
    ['--log-level', 'loud'],
    ['--max-devices', '0'],
    ['--max-connections-per-address', 'many'],
    ['--database', 'mysql://db/vigil'],
    ['--database'],
  ]) {
    await t.rejects(command.run(ctx(argv)), UsageError, argv.join(' '));
  }
});

t.test('vigil relay serves until SIGTERM, with an enrollment token', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const { writeFile } = await import('node:fs/promises');
  await writeFile(`${dir}/enroll`, 'let-me-in-please\n');
  const port = await freePort();
  const err: string[] = [];
  const out: string[] = [];
  const running = command.run(
    ctx(
      [
        '--data-dir',
        `${dir}/data`,
        '--port',
        String(port),
        '--enroll-token-file',
        `${dir}/enroll`,
        '--max-item-mb',
        '1',
        '--max-devices',
        '1',
        '--log-level',
        'info',
      ],
      err,
      out,
    ),
  );
  const url = `http://127.0.0.1:${port}`;
  const c = new RelayClient({ url });
  for (let i = 0; i < 100 && !err.join('').includes('listening'); i++)
    await new Promise((r) => setTimeout(r, 50));
  t.ok(await c.health());
  await t.rejects(c.registerDevice('dev-cli'), { message: /answered 401/ });
  const cred = await c.registerDevice('dev-cli', 'let-me-in-please');
  t.equal(cred.deviceId, 'dev-cli');
  await t.rejects(
    c
      .withToken(cred.token)
      .append(
        'big-item',
        { group: 'motion', kind: 'clip', offset: 0, final: false },
        Buffer.alloc(1024 * 1024 + 1),
      ),
    { message: /answered 413/ },
  );
  await t.rejects(c.registerDevice('dev-cli-2', 'let-me-in-please'), {
    message: /answered 507/,
  });
  process.emit('SIGTERM');
  t.equal(await running, 0);
  t.ok(
    out.some((l) => l.includes('relay listening')),
    'JSON log lines on stdout',
  );
  t.notOk(out.join('').includes('let-me-in-please'), 'the enrollment token is not logged');
});
