/**
 * vigil doctor with fakes at the lowest ports only: the V4L2 binding
 * (FakeV4l2Binding), the process runner (canned stdout per argv), host paths
 * under a temp root, and the HTTP probe.
 */
import t from 'tap';
import type { Test } from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FakeV4l2Binding,
  bcm2835CodecEncoderLike,
  vividLike,
} from '../../hw/camera/fake-v4l2-binding.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import { apModeOf, formatReport, runDoctor } from '../../bin/doctor-checks.js';
import type { DoctorDeps, DoctorSettings } from '../../bin/doctor-checks.js';
import { main } from '../../bin/cli.js';

const IW_AP = `Wiphy phy0
\tmax # scan SSIDs: 4
\tSupported interface modes:
\t\t * IBSS
\t\t * managed
\t\t * AP
\t\t * monitor
\tBand 1:
`;
const IW_NO_AP = IW_AP.replace('\t\t * AP\n', '');
const FFMPEG = ` V..... = Video
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC
 V....D h264_v4l2m2m         V4L2 mem2mem H.264 encoder wrapper (codec h264)
`;
const LSBLK = JSON.stringify({
  blockdevices: [
    {
      name: 'vda',
      fstype: null,
      type: 'disk',
      mountpoint: null,
      children: [
        {
          name: 'vda3',
          fstype: 'crypto_LUKS',
          type: 'part',
          mountpoint: null,
          children: [
            {
              name: 'vigil-data',
              fstype: 'ext4',
              type: 'crypt',
              mountpoint: '/var/lib/vigil/data',
            },
          ],
        },
      ],
    },
  ],
});

const SETTINGS: DoctorSettings = {
  encoder: 'auto',
  dataDir: '/var/lib/vigil/data',
  minFreeMiB: 512,
  relayUrl: 'https://relay.example.net',
  otaUrl: 'https://updates.example.net',
  configProblem: '',
  configSource: '/etc/vigil/config.json',
};

async function host(t: Test, pi: boolean): Promise<HostPaths> {
  const root = await mkdtemp(join(tmpdir(), 'vigil-doctor-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  if (pi) {
    await mkdir(join(root, 'proc/device-tree/chosen/bootloader'), { recursive: true });
    await writeFile(join(root, 'proc/device-tree/model'), 'Raspberry Pi 4 Model B Rev 1.5\0');
    await writeFile(join(root, 'proc/device-tree/serial-number'), '10000000abcdef01\0');
  }
  return new HostPaths(root);
}

function runner(over: Record<string, string | Error> = {}): {
  run: DoctorDeps['run'];
  calls: string[];
} {
  const calls: string[] = [];
  const out: Record<string, string | Error> = {
    uname: '6.6.51+rpt-rpi-v8\n',
    ffmpeg: FFMPEG,
    which: new Error('which exited with code 1'),
    iw: IW_AP,
    lsblk: LSBLK,
    df: 'Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/mapper/vigil-data 30000000000 1000000000 29000000000 4% /var/lib/vigil/data\n',
    timedatectl: 'yes\n',
    ...over,
  };
  return {
    calls,
    run: (cmd, args) => {
      calls.push([cmd, ...args].join(' '));
      const r = out[cmd];
      if (r === undefined) return Promise.reject(new Error(`${cmd} could not be started`));
      return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
    },
  };
}

const NOW = new Date(Date.UTC(2026, 11, 6, 12));

void t.test('a Pi with the codec: every check, the M2M path chosen, JSON stable', async (t) => {
  const binding = new FakeV4l2Binding()
    .add('/dev/video0', vividLike())
    .add('/dev/video11', bcm2835CodecEncoderLike());
  const r = runner();
  const report = await runDoctor(
    {
      binding,
      run: r.run,
      paths: await host(t, true),
      httpStatus: (url) =>
        url.startsWith('https://relay')
          ? Promise.resolve(404)
          : Promise.reject(new Error('ECONNREFUSED')),
      now: () => NOW,
    },
    SETTINGS,
  );
  t.equal(report.format, 'vigil-doctor/1');
  t.same(
    report.checks.map((c) => c.id),
    [
      'config',
      'board',
      'camera',
      'm2m',
      'encoder',
      'key-source',
      'tryboot',
      'wifi-ap',
      'luks',
      'free-space',
      'relay',
      'ota',
      'clock',
    ],
    'the documented checks, in order',
  );
  const by = Object.fromEntries(report.checks.map((c) => [c.id, c]));
  t.match(by.board, {
    status: 'pass',
    details: { model: 'Raspberry Pi 4 Model B Rev 1.5', kernel: '6.6.51+rpt-rpi-v8' },
  });
  t.match(by.camera, {
    status: 'pass',
    details: {
      cameras: [{ path: '/dev/video0', driver: 'vivid', formats: ['YUYV', 'RGB3'], h264: false }],
    },
  });
  t.match(by.m2m, {
    status: 'pass',
    details: { devices: [{ path: '/dev/video11', h264Encoder: true }] },
  });
  t.match(by.encoder, {
    status: 'pass',
    details: { path: 'v4l2-m2m', device: '/dev/video11', preference: 'auto' },
  });
  t.match(
    by.encoder!.details.rejected,
    [{ path: 'camera-h264' }],
    'why the camera path was not taken',
  );
  t.match(by['key-source'], { status: 'warn', details: { source: 'board-serial' } });
  t.match(by.tryboot, { status: 'pass', details: { supported: true } });
  t.match(by['wifi-ap'], { status: 'pass', details: { ap: true, phys: 1 } });
  t.match(by.luks, {
    status: 'pass',
    details: { state: 'open-mounted', containers: ['vda3'], mountedAt: '/var/lib/vigil/data' },
  });
  t.match(by['free-space'], { status: 'pass', details: { freeBytes: 29000000000 } });
  t.match(by.relay, { status: 'pass', details: { reachable: true, httpStatus: 404 } });
  t.match(by.ota, { status: 'fail', details: { reachable: false } });
  t.match(by.clock, { status: 'pass', details: { synchronized: true } });
  t.same(report.counts, { pass: 11, warn: 1, fail: 1 });
  for (const c of report.checks) t.notMatch(c.summary + c.hint, /\n/, `${c.id}: one line`);
  t.notMatch(JSON.stringify(report), /10000000abcdef01/, 'the board serial itself is never shown');
  t.ok(r.calls.includes('iw list'), 'AP mode from iw list');
  const text = formatReport(report);
  t.match(text, /^PASS {2}Board and kernel\s+Raspberry Pi 4 Model B Rev 1\.5, kernel 6\.6\.51/m);
  t.match(
    text,
    /^FAIL {2}Update server reachable\s+https:\/\/updates\.example\.net unreachable: ECONNREFUSED\n\s+-> check the network/m,
  );
  t.match(text, /11 pass, 1 warn, 1 fail\n$/);
});

void t.test(
  'the twin (vivid, no codec, no Pi): software path; missing pieces fail with hints',
  async (t) => {
    const r = runner({
      iw: IW_NO_AP,
      lsblk: JSON.stringify({ blockdevices: [] }),
      ffmpeg: FFMPEG.replace(/.*h264_v4l2m2m.*\n/, ''),
      timedatectl: 'no\n',
    });
    const report = await runDoctor(
      {
        binding: new FakeV4l2Binding().add('/dev/video0', vividLike()),
        run: r.run,
        paths: await host(t, false),
        httpStatus: () => Promise.resolve(200),
        now: () => NOW,
      },
      { ...SETTINGS, relayUrl: undefined, configProblem: 'cfg: field "camera.fps": too big' },
    );
    const by = Object.fromEntries(report.checks.map((c) => [c.id, c]));
    t.match(by.config, { status: 'fail', summary: 'cfg: field "camera.fps": too big' });
    t.match(by.board, { details: { model: 'unknown board' } });
    t.match(by.m2m, { status: 'warn', summary: 'no memory-to-memory device' });
    t.match(by.encoder, { status: 'warn', details: { path: 'software' } });
    t.match(by.encoder!.hint, /v4l2-m2m: /);
    t.match(by['key-source'], { status: 'warn', details: { source: null } });
    t.match(by.tryboot, { status: 'warn', details: { supported: false } });
    t.match(by['wifi-ap'], { status: 'fail', summary: 'no radio offers AP mode' });
    t.match(by.luks, { status: 'fail', details: { state: 'absent' } });
    t.match(by.relay, { status: 'warn', details: { url: null } });
    t.match(by.clock, { status: 'warn', details: { synchronized: false } });
  },
);

void t.test(
  "the volume mounted in the hub unit's own mount namespace: open and mounted, its free space",
  async (t) => {
    const lsblk = LSBLK.replace('"mountpoint":"/var/lib/vigil/data"', '"mountpoint":null');
    t.not(lsblk, LSBLK);
    const paths = await host(t, false);
    // pid 1 (the caller's namespace) lacks the mount; pid 812 (the hub, ProtectSystem=full) has it
    await mkdir(paths.host('/proc/1'), { recursive: true });
    await writeFile(
      paths.host('/proc/1/mountinfo'),
      '22 1 254:2 / / rw,relatime shared:1 - ext4 /dev/vda2 rw\n',
    );
    await mkdir(paths.host('/proc/812'), { recursive: true });
    await writeFile(
      paths.host('/proc/812/mountinfo'),
      '300 299 254:2 / / ro,relatime master:1 - ext4 /dev/vda2 rw\n' +
        '341 300 253:0 / /var/lib/vigil/data rw,nosuid,nodev,relatime - ext4 /dev/mapper/vigil-data rw\n',
    );
    // df of the data directory here is the root filesystem (nearly full); through the hub's
    // root it is the data volume
    const df = (args: readonly string[]): string =>
      args.at(-1)?.includes('/proc/812/root/') === true
        ? 'Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/mapper/vigil-data 30000000000 1000000000 29000000000 4% /var/lib/vigil/data\n'
        : 'Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/vda5 1547051008 1426112512 120938496 93% /\n';
    const run = async (lsblkOut: string, p: HostPaths): Promise<Map<string, unknown>> => {
      const base = runner({ lsblk: lsblkOut }).run;
      const report = await runDoctor(
        {
          binding: new FakeV4l2Binding(),
          run: (cmd, args) => (cmd === 'df' ? Promise.resolve(df(args)) : base(cmd, args)),
          paths: p,
          httpStatus: () => Promise.resolve(200),
          now: () => NOW,
        },
        SETTINGS,
      );
      return new Map(report.checks.map((c) => [c.id, c]));
    };
    const seen = await run(lsblk, paths);
    t.match(seen.get('luks'), {
      status: 'pass',
      details: { state: 'open-mounted', mountedAt: '/var/lib/vigil/data' },
    });
    t.match(seen.get('free-space'), {
      status: 'pass',
      details: { path: join(paths.host('/'), 'var/lib/vigil/data'), freeBytes: 29000000000 },
    });
    // nobody has it mounted: open, a warning; the free space is the root filesystem's
    const none = await run(lsblk, await host(t, false));
    t.match(none.get('luks'), { status: 'warn', details: { state: 'open', mountedAt: null } });
    t.match(none.get('free-space'), { status: 'warn', details: { freeBytes: 120938496 } });
  },
);

void t.test('no camera, no tools: fails, never throws', async (t) => {
  const report = await runDoctor(
    {
      binding: new FakeV4l2Binding(),
      run: (cmd) => Promise.reject(new Error(`${cmd} could not be started`)),
      paths: await host(t, false),
      httpStatus: () => Promise.reject(new Error('offline')),
      now: () => NOW,
    },
    SETTINGS,
  );
  const by = Object.fromEntries(report.checks.map((c) => [c.id, c]));
  t.match(by.camera, { status: 'fail' });
  t.match(by.encoder, { status: 'fail' });
  t.match(by['wifi-ap'], { status: 'fail', hint: /install iw/ });
  t.match(by['free-space'], { status: 'fail' });
  t.equal(report.checks.length, 13);
});

void t.test('iw list: AP only from the interface-modes list', async (t) => {
  t.ok(apModeOf(IW_AP));
  t.notOk(apModeOf(IW_NO_AP));
  t.notOk(apModeOf('Wiphy phy0\n\tSupported commands:\n\t\t * AP\n'), 'not from another list');
});

void t.test('the real command on this host: --json parses, every check present', async (t) => {
  let stdout = '';
  let stderr = '';
  const code = await main(
    ['doctor', '--json', '--timeout', '2', '--config', '/nonexistent/config.json'],
    'test',
    {
      env: {},
      stdout: (s) => (stdout += s),
      stderr: (s) => (stderr += s),
    },
  );
  t.equal(stderr, '');
  const report = JSON.parse(stdout) as {
    format: string;
    checks: { id: string; status: string }[];
    counts: { fail: number };
  };
  t.equal(report.format, 'vigil-doctor/1');
  t.equal(report.checks.length, 13);
  t.equal(code, report.counts.fail > 0 ? 1 : 0, 'exit 1 exactly when a check fails');
  t.match(
    report.checks.find((c) => c.id === 'config'),
    { status: 'pass' },
    'an absent config is the defaults',
  );
});

void t.test('no relay in the config: the one the running hub uses (its status file)', async (t) => {
  const { createServer } = await import('node:http');
  const server = createServer((_req, res) => res.writeHead(204).end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const root = await mkdtemp(join(tmpdir(), 'vigil-doctor-'));
  const paths = new HostPaths(root);
  await mkdir(paths.host('/run/vigil'), { recursive: true });
  const relayOf = async () => {
    let stdout = '';
    await main(
      ['doctor', '--json', '--timeout', '5', '--root', root, '--config', join(root, 'none.json')],
      'test',
      { env: {}, stdout: (s) => (stdout += s), stderr: () => undefined },
    );
    return (
      JSON.parse(stdout) as {
        checks: { id: string; status: string; summary: string; details: unknown }[];
      }
    ).checks.find((c) => c.id === 'relay');
  };
  t.match(await relayOf(), { status: 'warn', details: { url: null } }, 'no hub running: none');
  const url = `http://127.0.0.1:${port}`;
  await writeFile(
    paths.host('/run/vigil/status.json'),
    JSON.stringify({ state: 'running', services: { relay: { url, source: 'bundle' } } }),
  );
  t.match(await relayOf(), { status: 'pass', details: { url, reachable: true, httpStatus: 204 } });
  await writeFile(paths.host('/run/vigil/status.json'), '{"state": "runn');
  t.match(await relayOf(), { status: 'warn' }, 'a half-written status file: as if none');
  // the relay stops: the check names the network cause, not only fetch's "fetch failed"
  await writeFile(
    paths.host('/run/vigil/status.json'),
    JSON.stringify({ state: 'running', services: { relay: { url, source: 'bundle' } } }),
  );
  server.closeAllConnections();
  await new Promise<void>((r) =>
    server.close(() => {
      r();
    }),
  );
  t.match(await relayOf(), {
    status: 'fail',
    summary: new RegExp(`^${url} unreachable: .*\\(ECONNREFUSED\\)$`),
    details: { url, reachable: false, cause: 'ECONNREFUSED' },
  });
});
