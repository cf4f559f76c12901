#!/usr/bin/env node
/**
 * RAUC's custom bootloader backend as a process of its own (RAUC_PATHS.backend execs it; see
 * ota/rauc-backend.ts for the commands). Only the backend's modules load: RAUC starts it
 * several times per install and per mark-good, and the whole `vigil` CLI (`vigil ota
 * rauc-backend`, kept for use by hand) loads the OTA tooling with it — seconds per start on a
 * Pi, ten times that under qemu's TCG. Answers on stdout; a failure is one line on stderr and
 * exit code 1, which RAUC reports as the backend's error.
 */
import { reasonOf } from '../base/errors.js';
import { DurableFs } from '../hw/os/fs.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { boardBackend } from '../ota/rauc-backend.js';

try {
  const backend = await boardBackend(HostPaths.fromEnv(process.env), new DurableFs());
  process.stdout.write(await backend.handle(process.argv.slice(2)));
} catch (e) {
  process.stderr.write(`vigil rauc backend: ${reasonOf(e)}\n`);
  process.exitCode = 1;
}
