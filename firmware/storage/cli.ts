/**
 * `vigil storage ...`: the data volume from the console or over SSH.
 * Exit codes: 0 done, 1 error, 2 usage, 3 locked (could not unlock).
 */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { UsageError, parseOptions, subcommandError } from '../../base/command.js';
import type { Command, CommandContext } from '../../base/command.js';
import { DurableFs } from '../../hw/os/fs.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import { JsonLogger } from '../../base/logger.js';
import { RecoveryPassphraseSource } from './key-sources.js';
import type { KeySourceId } from './key-sources.js';
import { RelayPhoneUnlock, UnlockChannelStore } from './phone-unlock.js';
import { createRealStorage } from './real.js';
import { DEFAULT_RETENTION_POLICY, RetentionPolicySchema, RetentionStore } from './retention.js';
import type { Storage, UnlockResult } from './storage.js';

const USAGE = `Usage: vigil storage <subcommand> [options]

The encrypted data volume (LUKS2) of this hub.

Subcommands:
  status [--json]                     device, LUKS header, mapping, mount and first-boot record
  unlock [--wait]                     unlock and mount with the automatic key sources (OTP, dev key file)
  unlock --recovery                   unlock with the recovery key or a passphrase, read from the
                                      terminal without echo (or from stdin when it is not a terminal)
  lock                                unmount and close the volume
  recovery key                        print the recovery key kept in the unlocked volume
  recovery backup-header --to FILE    write a fresh LUKS header backup to FILE
  recovery restore-header --from FILE [--device DEV] [--force]
                                      restore a corrupt header from a backup (the volume must be closed)
  retention run [--policy FILE] [--json]
                                      apply the retention policy to the mounted volume now

Environment: VIGIL_ROOT, VIGIL_KEY_SOURCES (comma list, default "otp"), VIGIL_STORAGE_DEVICE,
VIGIL_STORAGE_CIPHER, VIGIL_OTP, VIGIL_DEV_KEYFILE (see docs/storage.md).`;

const MAX_PASSPHRASE = 1024;

/** Read one line without echo from a TTY (raw mode), or the first line of a piped stdin. */
export async function readPassphrase(
  input: Readable & { isTTY?: boolean; setRawMode?: (on: boolean) => unknown },
  prompt: (s: string) => void,
  signal?: AbortSignal,
): Promise<string> {
  if (input.isTTY === true && typeof input.setRawMode === 'function') {
    prompt('Recovery key or passphrase: ');
    input.setRawMode(true);
    input.resume();
    try {
      return await new Promise<string>((resolve, reject) => {
        let s = '';
        const onData = (c: Buffer): void => {
          for (const ch of c.toString('utf8')) {
            if (ch === '\r' || ch === '\n') {
              done();
              resolve(s);
              return;
            }
            if (ch === '\u0003' || ch === '\u0004') {
              done();
              reject(new UsageError('cancelled'));
              return;
            }
            if (ch === '\u007f' || ch === '\b') s = s.slice(0, -1);
            else if (s.length < MAX_PASSPHRASE) s += ch;
          }
        };
        const onAbort = (): void => {
          done();
          reject(new UsageError('cancelled'));
        };
        const done = (): void => {
          input.off('data', onData);
          signal?.removeEventListener('abort', onAbort);
          prompt('\n');
        };
        input.on('data', onData);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    } finally {
      input.setRawMode(false);
      input.pause();
    }
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of input) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(String(c));
    chunks.push(b);
    n += b.length;
    if (n > MAX_PASSPHRASE * 4) break;
  }
  const first = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  return first.slice(0, MAX_PASSPHRASE);
}

function keySourcesFrom(env: NodeJS.ProcessEnv): KeySourceId[] {
  const raw = env.VIGIL_KEY_SOURCES ?? 'otp';
  const ids = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const id of ids)
    if (!['otp', 'phone', 'recovery', 'dev-keyfile'].includes(id))
      throw new UsageError(`VIGIL_KEY_SOURCES: unknown key source "${id}"`);
  return ids as KeySourceId[];
}

function printResult(ctx: CommandContext, r: UnlockResult): number {
  if (r.state === 'unlocked') {
    ctx.stdout(
      `unlocked (${r.source}${r.firstBoot ? ', first boot' : ''}): mounted at ${r.mountPoint}\n`,
    );
    return 0;
  }
  ctx.stdout(
    `locked: ${r.reason}: ${r.detail}${r.waitingFor.length ? ` (waiting for: ${r.waitingFor.join(', ')})` : ''}\n`,
  );
  return 3;
}

export interface StorageCliDeps {
  /** Override the real stack (tests). */
  readonly makeStorage?: (ctx: CommandContext) => Promise<Storage>;
  readonly stdin?: Readable & { isTTY?: boolean; setRawMode?: (on: boolean) => unknown };
}

export function makeCommand(deps: StorageCliDeps = {}): Command {
  return {
    name: 'storage',
    summary: 'data partition: unlock, recovery, header backup',
    usage: USAGE,
    subcommands: Object.fromEntries(
      ['status', 'unlock', 'lock', 'recovery', 'retention'].map((k) => [k, USAGE]),
    ),
    moreExitCodes: '3 locked (the volume could not be unlocked, or is not mounted)',
    badValueExamples: [
      ['status', '--json=yes'],
      ['recovery', 'backup-header', '--to'],
    ],
    async run(ctx: CommandContext): Promise<number> {
      const [sub, ...rest] = ctx.argv;
      const { values, positionals } = parseOptions(
        rest,
        {
          json: { type: 'boolean' },
          recovery: { type: 'boolean' },
          wait: { type: 'boolean' },
          to: { type: 'string' },
          from: { type: 'string' },
          device: { type: 'string' },
          force: { type: 'boolean' },
          policy: { type: 'string' },
        },
        true,
      );
      const paths = HostPaths.fromEnv(ctx.env);
      const logger = new JsonLogger('vigil', {
        level: 'warn',
        write: (l) => {
          ctx.stderr(l + '\n');
        },
      });
      const make = async (): Promise<Storage> =>
        deps.makeStorage
          ? deps.makeStorage(ctx)
          : createRealStorage({
              paths,
              logger,
              env: ctx.env,
              keySources: keySourcesFrom(ctx.env),
              // phone unlock over the relay, when this hub has set it up (phone-unlock.ts)
              phone: new RelayPhoneUnlock({
                channel: () => new UnlockChannelStore({ paths, fs: new DurableFs() }).load(),
                logger,
              }),
            });
      const ac = new AbortController();
      const onSig = (): void => {
        ac.abort();
      };
      process.once('SIGINT', onSig);
      process.once('SIGTERM', onSig);
      try {
        switch (sub) {
          case 'status':
            return await status(ctx, await make(), values.json === true);
          case 'unlock': {
            const storage = await make();
            if (values.recovery === true) {
              const stdin = deps.stdin ?? process.stdin;
              const src = new RecoveryPassphraseSource((signal) =>
                readPassphrase(stdin, ctx.stderr, signal),
              );
              return printResult(ctx, await storage.unlockWith(src, ac.signal));
            }
            return printResult(
              ctx,
              await storage.unlockAndMount(ac.signal, { wait: values.wait === true }),
            );
          }
          case 'lock':
            await (await make()).lock(ac.signal);
            ctx.stdout('locked\n');
            return 0;
          case 'recovery':
            return await recovery(ctx, await make(), positionals, values);
          case 'retention': {
            if (positionals[0] !== 'run') throw subcommandError(positionals[0], ['run']);
            const storage = await make();
            const policy =
              values.policy !== undefined
                ? RetentionPolicySchema.parse(JSON.parse(await readFile(values.policy, 'utf8')))
                : DEFAULT_RETENTION_POLICY;
            const { UtilLinuxBlockDevices } = await import('../../hw/luks/block.js');
            const block = new UtilLinuxBlockDevices();
            if (!(await block.isMounted(storage.mountPoint))) {
              ctx.stderr(`the data volume is not mounted at ${storage.mountPoint}\n`);
              return 3;
            }
            const store = new RetentionStore({
              root: storage.mountPoint,
              fs: new DurableFs(),
              logger,
              stats: () => block.fsStats(storage.mountPoint),
            });
            await store.load();
            const r = await store.enforce(policy);
            if (values.json === true) ctx.stdout(JSON.stringify(r) + '\n');
            else
              ctx.stdout(
                `deleted ${String(r.deleted.length)} item(s), ${String(r.bytesFreed)} bytes; free ${String(r.freeBytesAfter)} bytes` +
                  (r.undeliveredDeleted.length
                    ? `; WARNING: ${String(r.undeliveredDeleted.length)} undelivered item(s) deleted (space critical)`
                    : '') +
                  '\n',
              );
            return r.stillCritical ? 1 : 0;
          }
          case undefined:
          default:
            throw subcommandError(sub, ['status', 'unlock', 'lock', 'recovery', 'retention']);
        }
      } finally {
        process.off('SIGINT', onSig);
        process.off('SIGTERM', onSig);
      }
    },
  };
}

async function status(ctx: CommandContext, storage: Storage, json: boolean): Promise<number> {
  const { UtilLinuxBlockDevices } = await import('../../hw/luks/block.js');
  const device = await storage.findDevice().catch(() => undefined);
  const record = await storage.readRecord();
  const luks = storage.luks;
  const isLuks = device !== undefined ? await luks.isLuks(device).catch(() => false) : false;
  const dump =
    isLuks && device !== undefined ? await luks.dump(device).catch(() => undefined) : undefined;
  const mapping = await luks.status(storage.config.mapperName).catch(() => undefined);
  const mounted = await new UtilLinuxBlockDevices()
    .isMounted(storage.mountPoint)
    .catch(() => false);
  const out = {
    device: device ?? null,
    luks: dump
      ? {
          uuid: dump.uuid,
          label: dump.label ?? null,
          subsystem: dump.subsystem ?? null,
          cipher: dump.segments[0]?.encryption ?? null,
          keyslots: dump.keyslots.map((k) => ({ id: k.id, pbkdf: k.pbkdf.type })),
        }
      : null,
    headerValid: isLuks,
    open: mapping !== undefined,
    mounted,
    mountPoint: storage.mountPoint,
    record: record
      ? { phase: record.phase, luksUuid: record.luksUuid, device: record.device }
      : null,
  };
  if (json) ctx.stdout(JSON.stringify(out) + '\n');
  else {
    ctx.stdout(`device:      ${device ?? 'not found'}\n`);
    ctx.stdout(
      `LUKS header: ${isLuks ? `valid (${dump?.uuid ?? '?'}, ${dump?.subsystem ?? 'no subsystem'}, ${out.luks?.cipher ?? '?'}, ${String(dump?.keyslots.length ?? 0)} keyslot(s))` : 'missing or corrupt'}\n`,
    );
    ctx.stdout(`mapping:     ${mapping ? `${mapping.path} open` : 'closed'}\n`);
    ctx.stdout(`mounted:     ${mounted ? storage.mountPoint : 'no'}\n`);
    ctx.stdout(`first boot:  ${record ? record.phase : 'not started'}\n`);
  }
  return mapping !== undefined && mounted ? 0 : 3;
}

async function recovery(
  ctx: CommandContext,
  storage: Storage,
  positionals: readonly string[],
  values: {
    to?: string | undefined;
    from?: string | undefined;
    device?: string | undefined;
    force?: boolean | undefined;
  },
): Promise<number> {
  switch (positionals[0]) {
    case 'key': {
      const m = await storage.recoveryMaterial();
      ctx.stdout(`${m.recoveryKey}\n`);
      return 0;
    }
    case 'backup-header': {
      if (values.to === undefined) throw new UsageError('backup-header needs --to FILE');
      const device = values.device ?? (await storage.findDevice());
      if (device === undefined) throw new UsageError('no data partition found; pass --device');
      await storage.luks.headerBackup(device, values.to);
      ctx.stdout(`header of ${device} written to ${values.to}\n`);
      return 0;
    }
    case 'restore-header': {
      if (values.from === undefined) throw new UsageError('restore-header needs --from FILE');
      const r = await storage.restoreHeader(values.from, {
        ...(values.force === true ? { force: true } : {}),
        ...(values.device !== undefined ? { device: values.device } : {}),
      });
      ctx.stdout(
        `header restored on ${r.device} (volume ${r.luksUuid}); unlock with "vigil storage unlock"\n`,
      );
      return 0;
    }
    case undefined:
    default:
      throw subcommandError(positionals[0], ['key', 'backup-header', 'restore-header']);
  }
}

export const command: Command = makeCommand();
