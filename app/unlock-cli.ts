/**
 * `vigil app unlock` and `vigil app recovery ...` (storage area; registered
 * in app/cli.ts). See docs/storage.md.
 */
import { createInterface } from 'node:readline/promises';
import { UsageError } from '../base/command.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { Logger } from '../base/logger.js';
import { VigilError, reasonOf } from '../base/errors.js';
import { RelayClient } from '../protocol/relay-client.js';
import type { RelayAccount } from './account.js';
import { RecoveryVault, recoveryShow } from './recovery.js';
import { unlockCli } from './unlock.js';

export interface StorageCliCtx {
  readonly dir: string;
  readonly fs: DurableFs;
  readonly log: Logger;
  readonly out: (t: string) => void;
  readonly err: (t: string) => void;
}

export interface StorageCliDeps {
  readonly needAccount: (c: StorageCliCtx) => Promise<RelayAccount>;
  /** Receive what the hub sent over the config group (escrow arrives this way). */
  readonly sync: () => Promise<void>;
  /** Owner approval; default: a y/N question on the terminal. */
  readonly confirm?: (question: string) => Promise<boolean>;
}

async function ttyConfirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY)
    throw new UsageError('not a terminal: pass --yes to approve sending the unlock key');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export async function storageAppCommand(
  c: StorageCliCtx,
  positional: readonly string[],
  opts: ReadonlyMap<string, string>,
  deps: StorageCliDeps,
): Promise<number> {
  const vault = new RecoveryVault(c.dir, c.fs);
  if (positional[0] === 'unlock') {
    const w = opts.get('--wait') ?? '60';
    if (!/^[1-9][0-9]{0,4}$/.test(w)) throw new UsageError('--wait must be a number of seconds');
    const acct = await deps.needAccount(c);
    const held = await vault.unlock();
    if (held === undefined)
      throw new VigilError(
        'ENOESCROW',
        `this phone holds no unlock key for its hub (${c.dir}/recovery/unlock.json): the hub sends it after pairing, while unlocked`,
      );
    if (held.deviceId !== acct.deviceId)
      throw new VigilError(
        'ENOESCROW',
        `the unlock key held is for hub ${held.deviceId}, this phone is paired with ${acct.deviceId}`,
      );
    return unlockCli({
      client: new RelayClient({ url: acct.url, token: acct.token }),
      vault: held,
      logger: c.log,
      out: c.out,
      err: c.err,
      confirm: opts.has('--yes') ? () => Promise.resolve(true) : (deps.confirm ?? ttyConfirm),
      waitMs: Number(w) * 1000,
    });
  }
  // recovery
  const sub = positional[1];
  if (sub !== 'show' && sub !== 'export-header')
    throw new UsageError('usage: vigil app recovery show [--json] | export-header FILE');
  const file = positional[2];
  if (sub === 'export-header' && file === undefined)
    throw new UsageError('usage: vigil app recovery export-header FILE');
  // Best effort: pick up escrow messages waiting on the relay first.
  await deps.sync().catch((e: unknown) => {
    c.err(`vigil app: could not reach the relay (${reasonOf(e)}); showing what is kept\n`);
  });
  if (sub === 'show') {
    c.out(await recoveryShow(vault, opts.has('--json')));
    return 0;
  }
  if (file === undefined) throw new UsageError('usage: vigil app recovery export-header FILE');
  const rec = await vault.exportHeader(file);
  c.out(
    `${file}: LUKS header backup of volume ${rec.luksUuid} (${rec.headerSize} bytes); restore on the hub with vigil storage recovery restore-header --from FILE\n`,
  );
  return 0;
}
