// Runs every suite (static checks, unit + integration through tap, the qemu
// system suite) and prints the closing "N passed, N failed" line.
// This is the README's test command (`npm run test:all`).
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { createCounter } from './tap-count.mjs';

const OUT = new URL('./out/', import.meta.url).pathname;
mkdirSync(OUT, { recursive: true });
// CI has 90 minutes in all; .ci/run sets the deadline (leaving room for the summary line).
// A step still running at the deadline is stopped and counted as failed, so the closing
// line is always printed.
const DEADLINE = Number(process.env.VIGIL_CI_DEADLINE_MS ?? 0) || Infinity;
let passed = 0;
let failed = 0;
const failures = [];

/** Run a command; stream output to the console and a log file; resolve exit code. */
function runStep(name, cmd, args, { tap = false, env = {}, quiet = false } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    console.log(`\n=== ${name}: ${cmd} ${args.join(' ')}`);
    const log = createWriteStream(`${OUT}/${name}.log`);
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
      detached: true, // its own process group: the deadline stops qemu and all
    });
    let overBudget = false;
    const budget =
      DEADLINE === Infinity
        ? undefined
        : setTimeout(
            () => {
              overBudget = true;
              console.log(`=== ${name}: CI time budget reached; stopping the step`);
              try {
                process.kill(-child.pid, 'SIGKILL');
              } catch {
                /* already gone */
              }
            },
            Math.max(0, DEADLINE - Date.now()),
          );
    const counter = tap ? createCounter(name) : undefined;
    const parser = counter?.parser;
    // a quiet step keeps its last lines, printed if it fails
    let tail = '';
    const keep = (d) => {
      if (quiet) tail = (tail + d.toString()).slice(-8000);
    };
    child.stdout.on('data', (d) => {
      if (!quiet) process.stdout.write(d);
      keep(d);
      log.write(d);
      parser?.write(d);
    });
    child.stderr.on('data', (d) => {
      if (!quiet) process.stderr.write(d);
      keep(d);
      log.write(d);
    });
    child.on('close', (code) => {
      if (budget) clearTimeout(budget);
      parser?.end();
      if (overBudget) {
        // what finished still counts; the step itself is one failure
        if (counter) passed += counter.counts.pass;
        failed += 1 + (counter ? counter.counts.fail : 0);
        failures.push(`${name}: stopped at the CI time budget`);
        log.end();
        resolve(code);
        return;
      }
      log.end();
      if (quiet && code !== 0) console.log(`=== ${name}: its last output\n${tail}`);
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      if (counter) {
        const counts = counter.counts;
        passed += counts.pass;
        failed += counts.fail;
        failures.push(...counts.failures);
        if (code !== 0 && counts.fail === 0) {
          failed++;
          failures.push(`${name}: exited ${code} without a failing test point`);
        }
        console.log(`=== ${name}: ${counts.pass} passed, ${counts.fail} failed (${secs}s)`);
      } else if (code === 0) {
        passed++;
        console.log(`=== ${name}: ok (${secs}s)`);
      } else {
        failed++;
        failures.push(`${name}: exit ${code}`);
        console.log(`=== ${name}: FAILED exit ${code} (${secs}s)`);
      }
      resolve(code);
    });
  });
}

await runStep('build', 'npm', ['run', '--silent', 'build']);
await runStep('typecheck', 'npm', ['run', '--silent', 'typecheck']);
await runStep('lint', 'npm', ['run', '--silent', 'lint']);
await runStep('deps', 'npm', ['run', '--silent', 'deps']);
await runStep('format', 'npm', ['run', '--silent', 'format:check']);
// unit and image run side by side: two heavy jobs on two cores, and each leaves the other
// room (the image build waits on apt downloads and disk, the unit suite on its servers and
// child processes): measured 1168 s together against 1007 + 488 s one after the other. The
// image step's own output goes to its log file (.ci/out/image.log), the console gets its
// summary line, so the unit step's TAP stays readable.
const imageStep =
  process.env.VIGIL_IMAGE_CI !== '0' || process.env.VIGIL_IMAGE_ARM64 === '1'
    ? // image: the amd64 twin built twice + compared, before the system suite boots build 1
      // (scenario image-twin-boot); on by default, VIGIL_IMAGE_CI=0 skips it (docs/image.md "CI")
      runStep(
        'image',
        'npx',
        ['tap', '--reporter=tap', '--disable-coverage', '--timeout=5400', 'test/image/ci-image.ts'],
        { tap: true, quiet: true },
      )
    : Promise.resolve(0);
await Promise.all([runStep('unit', 'npx', ['tap', '--reporter=tap'], { tap: true }), imageStep]);
if (process.env.VIGIL_SKIP_SYSTEM !== '1') {
  await runStep('system', 'npm', ['run', '--silent', 'test:system'], { tap: true });
}
if (failures.length) {
  console.log('\nFailures:');
  for (const f of failures) console.log(`  - ${f}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
