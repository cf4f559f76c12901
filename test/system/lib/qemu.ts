/**
 * Boot one qemu guest: x86_64 under TCG (this host's /dev/kvm cannot run a stock kernel),
 * serial console to a log file (and to onLine), a hard timeout, and an optional power cut
 * (SIGKILL) when a console line shows a marker. With `qmpEvents`, qemu's QMP events
 * (WATCHDOG, RESET, SHUTDOWN with its cause) are collected: how the host tells a watchdog
 * reset from the guest's own power-off.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import { spawnProcess } from '../../../hw/os/run.js';
import type { BootResult, BootSpec } from './types.js';

export const QEMU = 'qemu-system-x86_64';

/** qemu's argv for a spec (exported for tests and for printing a reproduction command). */
export function qemuArgs(spec: BootSpec): string[] {
  const args = [
    '-accel',
    'tcg,thread=multi',
    '-cpu',
    'max',
    '-m',
    String(spec.memoryMiB ?? 1536),
    '-smp',
    String(spec.cpus ?? 2),
    '-nodefaults',
    '-no-reboot',
    '-display',
    'none',
    '-monitor',
    'none',
    '-serial',
    'stdio',
    '-device',
    'virtio-rng-pci',
    '-kernel',
    spec.kernel,
    '-append',
    spec.append,
  ];
  if (spec.initrd !== undefined) args.push('-initrd', spec.initrd);
  spec.disks.forEach((d, i) => {
    const drive = [
      `file=${d.file}`,
      'if=none',
      `id=d${i}`,
      `format=${d.format ?? 'raw'}`,
      // default cache=writeback: what the guest flushed is in the host file, the rest is
      // lost on SIGKILL -- exactly a power cut (never cache=unsafe: it ignores flushes)
      ...(d.readonly === true ? ['readonly=on'] : []),
      ...(d.snapshot === true ? ['snapshot=on'] : []),
    ];
    args.push('-drive', drive.join(','));
    args.push(
      '-device',
      `virtio-blk-pci,drive=d${i}${d.serial !== undefined ? `,serial=${d.serial}` : ''}`,
    );
  });
  if (spec.qmpEvents === true) args.push('-qmp', `unix:${qmpSocket(spec)},server=on,wait=off`);
  args.push(...(spec.extraArgs ?? []));
  return args;
}

/** sun_path holds 108 bytes with its NUL: a longer socket path makes qemu refuse to start. */
export const UNIX_PATH_MAX = 107;

/**
 * The QMP socket: in the temporary directory, named by a hash of the console log's path (one
 * per boot, the same in a printed reproduction). Never beside the console log: a run
 * directory under a deep checkout (CI's /check/work/main/test/system/.cache/runs/<stamp>/...)
 * passes the socket-path limit, and qemu then exits at once without booting.
 */
export function qmpSocket(spec: BootSpec): string {
  const id = createHash('sha256').update(resolvePath(spec.consoleLog)).digest('hex').slice(0, 16);
  const name = `vigil-qmp-${id}.sock`;
  const inTmp = join(tmpdir(), name);
  return inTmp.length <= UNIX_PATH_MAX ? inTmp : join('/tmp', name);
}

/**
 * A QMP client that only listens: connect (qemu creates the socket while it starts, so
 * retry until it is there or qemu is gone), leave the capabilities negotiation, then hand
 * every event to `onEvent`.
 */
function listenQmp(
  path: string,
  gone: () => boolean,
  onEvent: (e: { event: string; data?: unknown }) => void,
): { finished(): Promise<void> } {
  let sock: Socket | undefined;
  let sockClosed: Promise<void> = Promise.resolve();
  const attempt = (): void => {
    if (gone()) return;
    const s = connect(path);
    let buf = '';
    s.on('error', () => {
      s.destroy();
      if (sock === undefined) setTimeout(attempt, 50);
    });
    s.on('connect', () => {
      sock = s;
      // qemu closes the connection when it exits: then every event it sent has been read
      sockClosed = new Promise<void>((resolve) => {
        s.once('close', () => {
          resolve();
        });
      });
      s.write('{"execute":"qmp_capabilities"}\n');
    });
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (line === '') continue;
        try {
          const msg = JSON.parse(line) as { event?: unknown; data?: unknown };
          if (typeof msg.event === 'string') onEvent({ event: msg.event, data: msg.data });
        } catch {
          /* not JSON: ignore (QMP speaks one JSON object per line) */
        }
      }
    });
  };
  attempt();
  return { finished: () => sockClosed };
}

export async function bootQemu(spec: BootSpec): Promise<BootResult> {
  const t0 = Date.now();
  const log = createWriteStream(spec.consoleLog);
  const lines: string[] = [];
  const vm = spawnProcess(QEMU, qemuArgs(spec), {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  // an object, not a `let`: the closures below change it
  const state: { outcome: BootResult['outcome'] } = { outcome: 'exited' };
  const kill = (why: 'killed' | 'done' | 'timeout'): void => {
    if (state.outcome !== 'exited') return;
    state.outcome = why;
    vm.child.kill('SIGKILL');
  };
  const timer = setTimeout(() => {
    kill('timeout');
  }, spec.timeoutMs);
  const events: string[] = [];
  let exitedYet = false;
  const qmp =
    spec.qmpEvents === true
      ? listenQmp(
          qmpSocket(spec),
          () => exitedYet,
          (e) => {
            const text = `${e.event}${e.data !== undefined ? ` ${JSON.stringify(e.data)}` : ''}`;
            events.push(text);
            log.write(`\n[qemu event] ${text}\n`);
          },
        )
      : undefined;
  const stdout = vm.child.stdout;
  const stderr = vm.child.stderr;
  let stderrTail = '';
  if (stderr) {
    stderr.on('data', (d: Buffer) => {
      const text = d.toString('utf8');
      log.write(`[qemu stderr] ${text}`);
      stderrTail = (stderrTail + text).slice(-2000);
    });
  }
  const reading = new Promise<void>((resolve) => {
    if (!stdout) {
      resolve();
      return;
    }
    stdout.on('data', (d: Buffer) => {
      log.write(d);
    });
    const rl = createInterface({ input: stdout, crlfDelay: Infinity });
    rl.on('line', (raw) => {
      const line = raw.replace(/\r/g, '');
      lines.push(line);
      spec.onLine?.(line);
      if (spec.killAtLine !== undefined && line.includes(spec.killAtLine)) kill('killed');
      if (spec.doneLine !== undefined && line.includes(spec.doneLine)) kill('done');
    });
    rl.on('close', () => {
      resolve();
    });
  });
  const exit = await vm.exited;
  exitedYet = true;
  clearTimeout(timer);
  await reading;
  await qmp?.finished();
  if (spec.qmpEvents === true) await rm(qmpSocket(spec), { force: true });
  const outcome = state.outcome;
  if (outcome === 'exited' && exit.exitCode !== 0) {
    log.write(
      `\n[harness] qemu exited with code ${String(exit.exitCode)} signal ${String(exit.signal)}\n`,
    );
  }
  const why = {
    exited: '',
    killed: 'killed at marker (power cut)',
    done: 'stopped at the done line',
    timeout: 'timed out',
  };
  if (outcome !== 'exited') log.write(`\n[harness] qemu ${why[outcome]}\n`);
  await new Promise<void>((done) => log.end(done));
  // qemu that never ran a guest (bad argument, socket path, missing file): its own words, not
  // a boot that seems to have ended by itself with nothing on the console
  if (outcome === 'exited' && exit.exitCode !== 0 && lines.length === 0)
    throw new Error(
      `qemu exited with code ${String(exit.exitCode)} before the guest printed anything: ${oneLine(stderrTail) || '(nothing on stderr)'}`,
    );
  return { outcome, consoleLog: spec.consoleLog, lines, events, wallMs: Date.now() - t0 };
}

function oneLine(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-3)
    .join(' | ');
}
