/**
 * Boot one qemu guest: x86_64 under TCG (this host's /dev/kvm cannot run a stock kernel),
 * serial console to a log file (and to onLine), a hard timeout, and an optional power cut
 * (SIGKILL) when a console line shows a marker.
 */
import { createWriteStream } from 'node:fs';
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
  args.push(...(spec.extraArgs ?? []));
  return args;
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
  const stdout = vm.child.stdout;
  const stderr = vm.child.stderr;
  if (stderr) {
    stderr.on('data', (d: Buffer) => {
      log.write(`[qemu stderr] ${d.toString('utf8')}`);
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
  clearTimeout(timer);
  await reading;
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
  await new Promise<void>((resolve) => log.end(resolve));
  return { outcome, consoleLog: spec.consoleLog, lines, wallMs: Date.now() - t0 };
}
