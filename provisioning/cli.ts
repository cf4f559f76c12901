/**
 * `vigil factory provision --count N --out DIR [--batch-id ID] [--no-progress]`
 *
 * Prints only counts and paths: secrets live in the bundles and the QR codes,
 * never on stdout, stderr or in logs.
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../base/command.js';
import type { Command, CommandContext } from '../base/command.js';
import { DurableFs } from '../hw/os/fs.js';
import { BatchError, MAX_BATCH, provisionBatch } from './batch.js';
import { ProgressBar } from './progress.js';

const USAGE = `
Usage: vigil factory provision --count N --out DIR [--batch-id ID] [--no-progress]

Make N device identities: per device a provisioning bundle (bundles/<ID>/,
for \`vigil image provision\`), QR labels (labels/<ID>.png, .svg) and one
print-ready sheet (labels.pdf); plus manifest.json and manifest.csv.

  --count N        number of devices, 1..${MAX_BATCH}
  --out DIR        new directory for the batch (must not exist)
  --batch-id ID    batch name (default: UTC timestamp + random suffix)
  --no-progress    no progress bar on stderr
`;

async function provision(ctx: CommandContext, args: readonly string[]): Promise<number> {
  let values: { count?: string; out?: string; 'batch-id'?: string; 'no-progress'?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        count: { type: 'string' },
        out: { type: 'string' },
        'batch-id': { type: 'string' },
        'no-progress': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  if (values.count === undefined) throw new UsageError('--count N is required');
  if (values.out === undefined || values.out === '') throw new UsageError('--out DIR is required');
  if (!/^[0-9]+$/.test(values.count))
    throw new UsageError(`--count must be a whole number, got "${values.count}"`);
  const count = Number(values.count);
  if (count < 1 || count > MAX_BATCH)
    throw new UsageError(`--count must be from 1 to ${MAX_BATCH}`);
  const bar =
    values['no-progress'] === true ? undefined : new ProgressBar(ctx.stderr, count, 'devices');
  try {
    const manifest = await provisionBatch({
      count,
      outDir: values.out,
      fs: new DurableFs(),
      ...(values['batch-id'] !== undefined ? { batchId: values['batch-id'] } : {}),
      onProgress: (done) => bar?.update(done),
    });
    bar?.finish();
    ctx.stdout(
      `provisioned ${manifest.count} device(s), batch ${manifest.batchId}\n` +
        `  out:      ${values.out}\n  labels:   ${values.out}/labels.pdf\n  manifest: ${values.out}/manifest.json, manifest.csv\n`,
    );
    return 0;
  } catch (e) {
    if (bar) ctx.stderr('\n');
    if (e instanceof BatchError && e.code !== 'EBATCH_DUPLICATE') throw new UsageError(e.message);
    throw e;
  }
}

export const command: Command = {
  name: 'factory',
  summary: 'factory provisioning: device identities and QR labels',
  usage: USAGE,
  async run(ctx) {
    const [sub, ...rest] = ctx.argv;
    if (sub === 'provision') return provision(ctx, rest);
    throw new UsageError(
      sub === undefined
        ? 'missing subcommand (provision)'
        : `unknown subcommand "${sub}" (provision)`,
    );
  },
};
