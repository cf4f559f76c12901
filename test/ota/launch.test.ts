/**
 * The launcher's entry point (ota/launch.ts, what systemd runs): once the command is over, a
 * handle it left open does not keep the process up (systemd would wait out its stop timeout
 * and SIGKILL it: issue 16's restart loop); the command's exit code stands.
 */
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnProcess } from '../../hw/os/run.js';
import { tempDir } from './helpers.js';

const LAUNCH = join(import.meta.dirname, '..', '..', 'ota', 'launch.ts');

void t.test(
  'a command that ends with a handle open: the process exits with its code',
  async (t) => {
    const work = await tempDir('vigil-launch-');
    const base = join(work, 'base');
    await mkdir(join(base, 'dist', 'bin'), { recursive: true });
    await writeFile(
      join(base, 'package.json'),
      JSON.stringify({ name: 'vigil', version: '1.0.0', type: 'module' }),
    );
    // a "hub" that stopped (exit code 3) but left a timer running, as a forgotten child pipe would
    await writeFile(
      join(base, 'dist', 'bin', 'vigil.js'),
      'setInterval(() => undefined, 60_000);\nprocess.exitCode = 3;\n',
    );
    const p = spawnProcess(process.execPath, [
      '--import',
      import.meta.resolve('tsx'),
      LAUNCH,
      '--slots',
      join(work, 'slots'),
      '--base',
      base,
      '--',
      'hub',
    ]);
    let stderr = '';
    p.child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const r = await p.exited;
    t.equal(r.exitCode, 3, "the command's exit code");
    t.match(stderr, /handles still open after the command ended; exiting/);
  },
);
