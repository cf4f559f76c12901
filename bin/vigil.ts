#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { main } from './cli.js';

function version(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'vigil' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      /* try the next location (source tree vs dist/) */
    }
  }
  return '0.0.0-unknown';
}

const code = await main(process.argv.slice(2), version(), {
  env: process.env,
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  stderrIsTTY: process.stderr.isTTY,
});
process.exitCode = code;
