#!/usr/bin/env node
/**
 * Entry point systemd runs (vigil-hub.service ExecStart):
 *
 *   node /opt/vigil/dist/ota/launch.js [--slots DIR] [--base DIR] -- hub --config /etc/vigil/config.json
 *
 * --slots: the A/B slot root (default <VIGIL_ROOT>/opt/vigil); --base: the tree
 * the image installed (default: the tree this file belongs to). See launcher.ts.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DurableFs } from '../hw/os/fs.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { reasonOf } from '../base/errors.js';
import { launch } from './launcher.js';
import { HostAppSlots } from './slots.js';

const argv = process.argv.slice(2);
const opts: Record<string, string> = {};
let i = 0;
for (; i < argv.length; i++) {
  const a = argv[i] ?? '';
  if (a === '--') {
    i++;
    break;
  }
  if (a !== '--slots' && a !== '--base') break;
  const v = argv[i + 1];
  if (v === undefined) {
    process.stderr.write(`vigil launch: ${a} needs a value\n`);
    process.exit(2);
  }
  opts[a.slice(2)] = v;
  i++;
}
const here = dirname(fileURLToPath(import.meta.url));
// dist/ota/launch.js -> the tree root two levels up (ota/launch.ts under tsx: one level)
const baseDir = resolve(
  opts.base ?? (here.endsWith(join('dist', 'ota')) ? join(here, '..', '..') : join(here, '..')),
);
const slotsRoot = resolve(opts.slots ?? HostPaths.fromEnv(process.env).host('/opt/vigil'));
try {
  await launch({
    slots: new HostAppSlots(slotsRoot, new DurableFs()),
    baseDir,
    args: argv.slice(i),
    env: process.env,
    log: (l) => process.stderr.write(`${l}\n`),
  });
} catch (e) {
  process.stderr.write(`vigil launch: ${reasonOf(e)}\n`);
  process.exitCode = 1;
}
// The command is over (the hub stopped; its exit code is set). A handle something left open
// (a child's pipe, a socket, a timer) must not keep the process up until systemd's stop
// timeout SIGKILLs it (seen in the twin's restart loop, issue 16): exit after a grace.
setTimeout(() => {
  process.stderr.write('vigil launch: handles still open after the command ended; exiting\n');
  process.exit();
}, 5000).unref();
