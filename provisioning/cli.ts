/**
 * `vigil factory provision --count N --out DIR [--batch-id ID] [--no-progress]
 *    [--relay URL [--relay-enroll-token-file F]] [--ota-repo URL --ota-root FILE [--ota-channel NAME]]`
 *
 * Prints only counts and paths: secrets live in the bundles and the QR codes,
 * never on stdout, stderr or in logs.
 */
import { readFile } from 'node:fs/promises';
import {
  DEFAULT_OTA_CHANNEL,
  EnrollTokenSchema,
  OtaChannelSchema,
  otaRootProblem,
  serviceUrlProblem,
} from '../protocol/services.js';
import { UsageError, intOption, parseOptions, subcommandError } from '../base/command.js';
import type { Command, CommandContext } from '../base/command.js';
import { DurableFs } from '../hw/os/fs.js';
import { BatchError, MAX_BATCH, provisionBatch } from './batch.js';
import type { BatchServices } from './batch.js';
import { ProgressBar } from './progress.js';

const USAGE = `
Usage: vigil factory provision --count N --out DIR [--batch-id ID] [--no-progress]
         [--relay URL [--relay-enroll-token-file F]]
         [--ota-repo URL --ota-root FILE [--ota-channel NAME]]

Make N device identities: per device a provisioning bundle (bundles/<ID>/,
for \`vigil image provision\`), QR labels (labels/<ID>.png, .svg) and one
print-ready sheet (labels.pdf); plus manifest.json and manifest.csv.

  --count N        number of devices, 1..${MAX_BATCH}
  --out DIR        new directory for the batch (must not exist)
  --batch-id ID    batch name (default: UTC timestamp + random suffix)
  --no-progress    no progress bar (it is shown only when stderr is a terminal)
  --relay URL      the relay every device of the batch meets its phones at
                   (https; http only to a loopback or link-local address)
  --relay-enroll-token-file F
                   the relay's enrollment token, read from a file (never argv)
  --ota-repo URL   the OTA repository (same URL rule as --relay)
  --ota-root FILE  its TUF root.json: the devices' update trust root
  --ota-channel NAME  the release channel (default ${DEFAULT_OTA_CHANNEL})

Without --relay/--ota-*, the hub takes its services from its config file.
`;

interface ServiceFlags {
  relay?: string;
  'relay-enroll-token-file'?: string;
  'ota-repo'?: string;
  'ota-root'?: string;
  'ota-channel'?: string;
}

async function readFlagFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new UsageError(
      `${flag}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

/** The services flags, checked; every error names its flag and never echoes a token. */
export async function parseServiceFlags(v: ServiceFlags): Promise<BatchServices> {
  const url = (flag: string, raw: string): string => {
    const problem = serviceUrlProblem(raw);
    if (problem !== undefined) throw new UsageError(`${flag} ${problem}`);
    return raw.replace(/\/+$/, '');
  };
  let relay: BatchServices['relay'];
  if (v.relay !== undefined) {
    let enrollToken: string | undefined;
    const tokenFile = v['relay-enroll-token-file'];
    if (tokenFile !== undefined) {
      const text = (await readFlagFile('--relay-enroll-token-file', tokenFile))
        .toString('utf8')
        .replace(/\r?\n$/, '');
      const r = EnrollTokenSchema.safeParse(text);
      if (!r.success)
        throw new UsageError(
          `--relay-enroll-token-file: the token ${r.error.issues[0]?.message ?? 'is invalid'}`,
        );
      enrollToken = r.data;
    }
    relay = { url: url('--relay', v.relay), ...(enrollToken !== undefined ? { enrollToken } : {}) };
  } else if (v['relay-enroll-token-file'] !== undefined) {
    throw new UsageError('--relay-enroll-token-file needs --relay');
  }
  let ota: BatchServices['ota'];
  let otaRoot: Uint8Array | undefined;
  const repo = v['ota-repo'];
  const rootFile = v['ota-root'];
  if (repo !== undefined || rootFile !== undefined || v['ota-channel'] !== undefined) {
    if (repo === undefined) throw new UsageError('--ota-root and --ota-channel need --ota-repo');
    if (rootFile === undefined)
      throw new UsageError(
        '--ota-repo needs --ota-root (the trust root its updates are checked with)',
      );
    const channel = v['ota-channel'] ?? DEFAULT_OTA_CHANNEL;
    const c = OtaChannelSchema.safeParse(channel);
    if (!c.success)
      throw new UsageError(`--ota-channel ${c.error.issues[0]?.message ?? 'is invalid'}`);
    otaRoot = await readFlagFile('--ota-root', rootFile);
    const problem = otaRootProblem(otaRoot);
    if (problem !== undefined) throw new UsageError(`--ota-root: ${rootFile} ${problem}`);
    ota = { repositoryUrl: url('--ota-repo', repo), channel: c.data };
  }
  return {
    ...(relay ? { relay } : {}),
    ...(ota ? { ota } : {}),
    ...(otaRoot ? { otaRoot } : {}),
  };
}

async function provision(ctx: CommandContext, args: readonly string[]): Promise<number> {
  const { values } = parseOptions(args, {
    count: { type: 'string' },
    out: { type: 'string' },
    'batch-id': { type: 'string' },
    'no-progress': { type: 'boolean' },
    relay: { type: 'string' },
    'relay-enroll-token-file': { type: 'string' },
    'ota-repo': { type: 'string' },
    'ota-root': { type: 'string' },
    'ota-channel': { type: 'string' },
  });
  if (values.count === undefined) throw new UsageError('--count N is required');
  if (values.out === undefined || values.out === '') throw new UsageError('--out DIR is required');
  const count = intOption(values.count, '--count', 1, MAX_BATCH) ?? 1;
  const services = await parseServiceFlags(values);
  // A bar redrawn with carriage returns belongs on a terminal only, never in a log file.
  const bar =
    values['no-progress'] === true || ctx.stderrIsTTY !== true
      ? undefined
      : new ProgressBar(ctx.stderr, count, 'devices');
  try {
    const manifest = await provisionBatch({
      count,
      outDir: values.out,
      fs: new DurableFs(),
      ...(values['batch-id'] !== undefined ? { batchId: values['batch-id'] } : {}),
      services,
      onProgress: (done) => bar?.update(done),
    });
    bar?.finish();
    ctx.stdout(
      `provisioned ${manifest.count} device(s), batch ${manifest.batchId}\n` +
        `  out:      ${values.out}\n  labels:   ${values.out}/labels.pdf\n  manifest: ${values.out}/manifest.json, manifest.csv\n` +
        `  relay:    ${services.relay?.url ?? '(none: the hub config decides)'}${services.relay?.enrollToken !== undefined ? ' (with enrollment token)' : ''}\n` +
        `  ota:      ${services.ota ? `${services.ota.repositoryUrl} channel ${services.ota.channel}` : '(none: the hub config decides)'}\n`,
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
  subcommands: { provision: USAGE },
  badValueExamples: [
    ['provision', '--count', 'many', '--out', '/nonexistent/batch'],
    ['provision', '--count', '0', '--out', '/nonexistent/batch'],
  ],
  async run(ctx) {
    const [sub, ...rest] = ctx.argv;
    if (sub === 'provision') return provision(ctx, rest);
    throw subcommandError(sub, ['provision']);
  },
};
