// `vigil dev` as real processes, as a user runs it: two runs on one state
// directory (the second must still deliver new clips to the viewer), JSON logs
// on a pipe and human lines when asked, the banner printed last and again on
// SIGUSR1, Ctrl-C with a message and a quick stop that takes the encoder down,
// busy ports that fail the whole run with one line, and --pairing-port.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { spawnProcess } from '../../hw/os/run.js';
import type { Spawned } from '../../hw/os/run.js';

// Under a loaded CI machine the simulated camera and x264 run slowly: be patient.
t.setTimeout(900_000);

const VIGIL = ['--import', 'tsx', join(import.meta.dirname, '..', '..', 'bin', 'vigil.ts')];

interface Dev {
  readonly proc: Spawned;
  out(): string;
  err(): string;
  /** Resolves with the match once stdout matches `re` at or after `from`; rejects if the run exits first. */
  waitFor(re: RegExp, from?: number): Promise<RegExpMatchArray>;
}

function startDev(args: readonly string[], env: Record<string, string | undefined> = {}): Dev {
  const proc = spawnProcess(process.execPath, [...VIGIL, 'dev', ...args], {
    env: { ...process.env, VIGIL_LOG_FORMAT: undefined, ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  proc.child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) w();
  });
  proc.child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  void proc.exited.then(() => {
    for (const w of [...waiters]) w();
  });
  let exited = false;
  void proc.exited.then(() => (exited = true));
  return {
    proc,
    out: () => out,
    err: () => err,
    waitFor(re, from = 0) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = out.slice(from).match(re);
          if (m) {
            waiters.delete(check);
            resolve(m);
          } else if (exited) {
            waiters.delete(check);
            reject(new Error(`vigil dev exited before ${String(re)}:\n${out}\n${err}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

const BANNER =
  /Vigil is running[^]*?viewer: +(\S+)\n +phone: +(\S+)[^]*?relay: +(\S+)\n[^]*?Ctrl-C to stop\./;

async function viewerSeqs(viewerUrl: string): Promise<number[]> {
  const u = new URL(viewerUrl);
  const res = await fetch(new URL(`/api/events${u.search}`, u));
  if (res.status !== 200) throw new Error(`viewer answered ${String(res.status)}`);
  const body = (await res.json()) as { events: { seq: number }[] };
  return body.events.map((e) => e.seq);
}

async function stopWithCtrlC(t: Test, dev: Dev): Promise<number> {
  const at = Date.now();
  dev.proc.child.kill('SIGINT');
  const x = await dev.proc.exited;
  const s = (Date.now() - at) / 1000;
  t.equal(x.exitCode, 0, 'Ctrl-C ends the run with exit code 0');
  t.match(dev.out(), /Stopping Vigil/, 'Ctrl-C is acknowledged at once');
  t.match(dev.out(), /Vigil stopped \(\d+\.\d s\)\./, 'and the end of the stop is reported');
  return s;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('two runs on one state directory: the viewer shows new clips after a restart', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-dev-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const args = ['--dir', dir, '--viewer-port', '0'];

  // Run 1: stdout is a pipe, so JSON lines by default.
  const one = startDev(args);
  t.teardown(() => one.proc.stop(500));
  const b1 = await one.waitFor(BANNER);
  const [, viewer1 = '', phoneDir = '', relay1 = ''] = b1;
  t.equal(phoneDir, join(dir, 'app'), 'the banner names the phone state directory');
  const startup = one.out().slice(0, b1.index);
  t.notMatch(startup, /instead of/, 'the defaults match the simulated camera (no scaling)');
  t.match(startup, /"format":"YU12 640x480@15"/, 'the camera runs at its own 640x480');
  const lines1 = startup.split('\n').filter((l) => l.startsWith('{'));
  t.ok(lines1.length > 5, 'JSON log lines on a pipe');
  for (const l of lines1) JSON.parse(l);
  t.ok(
    one.out().indexOf('"msg":"viewer listening"') < (b1.index ?? 0),
    'the banner comes after the start-up logs',
  );
  const clip1 = await one.waitFor(/"msg":"item stored","seq":(\d+),"kind":"clip"/);
  const seq1 = Number(clip1[1]);
  t.ok((await viewerSeqs(viewer1)).includes(seq1), `run 1: the viewer lists clip ${String(seq1)}`);
  const encoder1 = Number(
    (await one.waitFor(/"msg":"encoder started","path":"\w+","pid":(\d+)/))[1],
  );
  const stopS = await stopWithCtrlC(t, one);
  t.comment(`run 1 stopped ${stopS.toFixed(1)} s after Ctrl-C`);
  // The stop time is reported, not asserted (a timing belongs in a benchmark, and a loaded CI
  // machine would miss any fixed bound). The cause of the old ~24 s stop — the sync loop
  // sleeping out its retry delay — is proven by test/app/sync.test.ts (a one-hour retry delay
  // ends on abort); here the run must end cleanly and take its encoder with it.
  t.notOk(isAlive(encoder1), 'the camera encoder process is gone');

  // Run 2 on the same directory, human lines asked for through the environment.
  const two = startDev(args, { VIGIL_LOG_FORMAT: 'human' });
  t.teardown(() => two.proc.stop(500));
  const b2 = await two.waitFor(BANNER);
  const [, viewer2 = '', , relay2 = ''] = b2;
  t.equal(relay2, relay1, 'the relay keeps its port across runs');
  t.equal(new URL(viewer2).search, new URL(viewer1).search, 'the viewer keeps its access token');
  const human = two
    .out()
    .slice(0, b2.index)
    .split('\n')
    .filter((l) => l !== '');
  t.ok(human.length > 5);
  t.same(
    human.filter((l) => !/^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARN |ERROR) \S/.test(l)),
    [],
    'every log line is one human line: time, level, area, message',
  );
  const clip2 = await two.waitFor(/ sync: item stored seq=(\d+) kind=clip/);
  const seq2 = Number(clip2[1]);
  t.ok(seq2 > seq1, 'a new clip reached the phone after the restart');
  const listed = await viewerSeqs(viewer2);
  t.ok(listed.includes(seq2), `run 2: the viewer lists the new clip ${String(seq2)}`);
  t.ok(listed.includes(seq1), 'and still the clip from run 1');
  t.notMatch(two.out(), /sync failed/, 'the phone reached the relay at once');

  // the banner again on demand
  const again = two.out().length;
  two.proc.child.kill('SIGUSR1');
  const b3 = await two.waitFor(BANNER, again);
  t.equal(b3[1], viewer2, 'SIGUSR1 prints the banner again');

  // no secret of the run in its output (the viewer token is the one printed on purpose)
  const device = JSON.parse(await readFile(join(dir, 'hub/data/relay-account.json'), 'utf8')) as {
    token: string;
  };
  const phone = JSON.parse(await readFile(join(dir, 'app/relay.json'), 'utf8')) as {
    token: string;
  };
  const identity = JSON.parse(await readFile(join(dir, 'hub/identity.json'), 'utf8')) as {
    secret: string;
  };
  await stopWithCtrlC(t, two);
  const all = one.out() + one.err() + two.out() + two.err();
  for (const [what, s] of [
    ['hub relay token', device.token],
    ['phone relay token', phone.token],
    ['device secret', identity.secret],
  ] as const)
    t.notOk(all.includes(s), `the ${what} is not in the output`);
});

async function occupy(t: Test): Promise<number> {
  const srv: Server = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
  t.teardown(
    () =>
      new Promise<void>((res) =>
        srv.close(() => {
          res();
        }),
      ),
  );
  return (srv.address() as { port: number }).port;
}

t.test('a busy port fails the whole run with one line and a non-zero exit', async (t) => {
  const cases: {
    name: string;
    args: (dir: string, port: number) => Promise<string[]>;
    want: (port: number) => RegExp;
  }[] = [
    {
      name: 'viewer port',
      args: (dir, port) => Promise.resolve(['--dir', dir, '--viewer-port', String(port)]),
      want: (port) =>
        new RegExp(
          `^vigil dev: viewer port ${String(port)} on 127\\.0\\.0\\.1 is already in use; .*--viewer-port N$`,
        ),
    },
    {
      name: 'relay port',
      args: (dir, port) =>
        Promise.resolve(['--dir', dir, '--viewer-port', '0', '--relay-port', String(port)]),
      want: (port) =>
        new RegExp(
          `^vigil dev: relay port ${String(port)} on 127\\.0\\.0\\.1 is already in use; .*--relay-port N$`,
        ),
    },
    {
      name: 'relay port saved by an earlier run',
      args: async (dir, port) => {
        await writeFile(join(dir, 'local-run.json'), JSON.stringify({ relayPort: port }));
        return ['--dir', dir, '--viewer-port', '0'];
      },
      want: (port) =>
        new RegExp(
          `^vigil dev: relay port ${String(port)} .* in use; it was saved in .*local-run\\.json`,
        ),
    },
    {
      name: 'pairing port',
      args: (dir, port) =>
        Promise.resolve(['--dir', dir, '--viewer-port', '0', '--pairing-port', String(port)]),
      want: (port) =>
        new RegExp(
          `^vigil dev: pairing port ${String(port)} on 127\\.0\\.0\\.1 is already in use; .*--pairing-port$`,
        ),
    },
  ];
  for (const c of cases)
    await t.test(c.name, async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'vigil-dev-busy-'));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      const port = await occupy(t);
      const dev = startDev(await c.args(dir, port));
      t.teardown(() => dev.proc.stop(500));
      const x = await dev.proc.exited; // a run that kept going would never get here
      t.equal(x.exitCode, 1, 'exit code 1');
      const lines = dev
        .err()
        .split('\n')
        .filter((l) => l !== '');
      t.equal(lines.length, 1, 'one line on stderr');
      t.match(lines[0] ?? '', c.want(port));
      t.equal(dev.out(), '', 'nothing was started (no logs, no banner)');
    });
});

t.test('bad options: one line, exit 2', async (t) => {
  for (const [args, want] of [
    [
      ['--log-format', 'xml'],
      /^vigil dev: --log-format \(or VIGIL_LOG_FORMAT\) must be human or json, got "xml"$/,
    ],
    [['--viewer-port', 'abc'], /^vigil dev: --viewer-port must be a port number, got "abc"$/],
    [['--pairing-port', '70000'], /^vigil dev: --pairing-port must be a port number, got "70000"$/],
    [['--pairing-port', '7.5'], /^vigil dev: --pairing-port must be a port number, got "7\.5"$/],
    [['--pairing-port='], /^vigil dev: --pairing-port must be a port number, got ""$/],
  ] as const) {
    const dev = startDev(args);
    const x = await dev.proc.exited;
    t.equal(x.exitCode, 2, `${args.join(' ')}: exit 2`);
    const lines = dev
      .err()
      .split('\n')
      .filter((l) => l !== '');
    t.equal(lines.length, 1);
    t.match(lines[0] ?? '', want);
  }
});

t.test('--pairing-port: the banner says where to pair, and the hub answers there', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-dev-pairing-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const dev = startDev(['--dir', dir, '--viewer-port', '0', '--pairing-port', '0']);
  t.teardown(() => dev.proc.stop(5000));
  const m = await dev.waitFor(/\n +pairing: +127\.0\.0\.1:(\d+) +\(label: (\S+)\)\n/);
  const [, port = '', labelFile = ''] = m;
  t.equal(labelFile, join(dir, 'hub', 'label.txt'));
  t.match(await readFile(labelFile, 'utf8'), /^VIGIL1:[A-Z2-7]{16}:[A-Z2-7]{52}:[A-Z2-7]{4}\n$/);
  // a hello with a PSK id the hub does not know: the real responder's documented refusal
  const { connect } = await import('node:net');
  const { randomBytes } = await import('node:crypto');
  const hello = Buffer.from(
    JSON.stringify({
      t: 'hello',
      versions: [1],
      phoneTime: Date.now(),
      phoneId: randomBytes(16).toString('hex'),
      signaturePublicKey: randomBytes(32).toString('base64url'),
      pskId: randomBytes(16).toString('base64url'),
    }),
  );
  const head = Buffer.from([0, 0, 0, 0, 1, 1]);
  head.writeUInt32BE(2 + hello.length, 0);
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: Number(port) }, () =>
      s.write(Buffer.concat([head, hello])),
    );
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => {
      resolve(Buffer.concat(parts));
    });
    s.once('error', reject);
  });
  t.equal(reply[5], 1, 'a pairing frame');
  t.match(JSON.parse(reply.subarray(6).toString('utf8')), { t: 'error', code: 'EPSK_UNKNOWN' });
  await stopWithCtrlC(t, dev);
  const secret = (await readFile(labelFile, 'utf8')).split(':')[2] ?? '';
  t.notOk(dev.out().includes(secret) || dev.err().includes(secret), 'the label is not printed');
});
