/**
 * `vigil app`: the companion CLI.
 *
 *   vigil app list [--json]                 fetch new items from the relay, list events
 *   vigil app fetch <seq> -o FILE.mp4       decrypt a stored clip (or thumbnail) to a file
 *   vigil app live -o FILE.mp4 [--seconds N]  follow the live view into a file
 *   vigil app heartbeat                     send a heartbeat to the hub, print its answers
 *   vigil app sync [--follow]               pull the mailbox; --follow keeps syncing, sends
 *                                           scheduled heartbeats/refreshes, reports offline
 *   vigil app phones add|remove <phoneId>|list
 *   vigil app view [--port N]               local web viewer
 *   vigil app push key|register|list|remove|open   push endpoints (app/push.ts)
 *   vigil app pair ...                      pairing (app/pair/cli.ts)
 *
 * Global: --dir DIR (default $VIGIL_APP_DIR or ~/.config/vigil-app).
 */
import { createWriteStream } from 'node:fs';
import type { Command, CommandContext } from '../base/command.js';
import {
  LOG_LEVELS,
  UsageError,
  choiceOption,
  intOption,
  parseOptions,
  portOption,
  subcommandError,
} from '../base/command.js';
import { JsonLogger } from '../base/logger.js';
import type { Logger } from '../base/logger.js';
import { DurableFs, pathExists } from '../hw/os/fs.js';
import { VigilError, reasonOf } from '../base/errors.js';
import { RelayClient } from '../protocol/relay-client.js';
import { defaultAppDir, devKeyPath, e2eeDir, loadAccount } from './account.js';
import type { RelayAccount } from './account.js';
import type { Inbound } from './e2ee/phone.js';
import type { CompanionCrypto } from './crypto.js';
import { StaticKeyCrypto, streamItem } from './crypto.js';
import { followLive } from './live.js';
import { FollowScheduler } from './follow.js';
import { DEFAULT_LIVE_SECONDS, RENEW_EVERY_S, linkOver } from './hub-link.js';
import type { HubLink } from './hub-link.js';
import { ItemStore } from './store.js';
import { Syncer } from './sync.js';
import { eventsOf, startViewer } from './viewer/server.js';
import { PAIR_USAGE } from './pair/usage.js';

const USAGE = `
Usage: vigil app <subcommand> [options]

Subcommands:
  list [--json]                     list events: new ones from the relay, else those kept here
  fetch <seq> -o FILE               decrypt a stored clip or thumbnail to FILE (MP4 / JPEG)
  live -o FILE [--seconds N] [--wait S]
                                    ask the hub for live view and write it to FILE (fragmented
                                    MP4); exits 1 with the reason when none arrives within S [20]
  heartbeat                         send a heartbeat to the hub and print its answers
  sync [--follow] [--heartbeat-every S] [--refresh-every S] [--offline-after S]
                                    fetch new items; --follow keeps going: heartbeats every S
                                    [3600], refresh by re-add per group every S [604800], and an
                                    offline alert when the hub's sealed beats stop
  phones list [--json]              this phone's id (the one the hub and phones remove use)
  phones add                        ask the hub for an invite for another phone (admin phone)
  phones remove <phoneId>           ask the hub to remove a phone (admin phone)
  view [--port N] [--no-sync]       serve the local web viewer and print its URL
  pair ...                          pair with a hub (vigil app pair --help)
  unlock [--yes] [--wait S]         unlock a locked hub with this phone's escrowed key
  recovery show [--json]            the hub's recovery key and header backup kept on this phone
  recovery export-header FILE       write the escrowed LUKS header backup to FILE (0600)
  updates [--json]                  the hub's software update outcomes (installed, rolled back)
  push key                          the relay's VAPID public key (to subscribe with)
  push register --endpoint URL --p256dh KEY --auth SECRET
                                    have the relay push the hub's notices to this Web Push /
                                    UnifiedPush endpoint (keys: base64url, from the subscription)
  push list | push remove <id>      this phone's push endpoints at the relay
  push open FILE                    open a received push message (hub notice: MLS; "unseen"
                                    notices are the relay's word and labelled relay-reported)

Options (every subcommand):
  --dir DIR                         companion state [$VIGIL_APP_DIR or ~/.config/vigil-app];
                                    the local run's phone: --dir .vigil-dev/app
  --log-level LEVEL                 debug|info|warn|error [warn]
`;

const COMMON = `
Options:
  --dir DIR          companion state [$VIGIL_APP_DIR or ~/.config/vigil-app];
                     the local run's phone: --dir .vigil-dev/app
  --log-level LEVEL  debug|info|warn|error [warn]
  --help             show this help`;

const sub = (usage: string, text: string): string =>
  `\nUsage: vigil app ${usage}\n\n${text.trim()}\n${COMMON}\n`;

const SUBCOMMANDS: Readonly<Record<string, string>> = {
  list: sub(
    'list [--json]',
    'Fetches new items from the relay and lists the events (clips) kept on this phone,\nnewest last. With the relay unreachable it lists what is kept, and says so.\n  --json             {"events": [...], "synced": true|false}',
  ),
  fetch: sub('fetch <seq> -o FILE', 'Decrypts stored item <seq> (see vigil app list) to FILE.'),
  live: sub(
    'live -o FILE [--seconds N] [--wait S]',
    'Asks the hub for live view and writes it to FILE (fragmented MP4).\n  --seconds N        stop after N seconds\n  --wait S           give up when nothing arrives within S seconds [20]',
  ),
  heartbeat: sub('heartbeat', 'Sends a heartbeat to the hub and prints its answers.'),
  sync: sub(
    'sync [--follow] [--heartbeat-every S] [--refresh-every S] [--offline-after S]',
    'Fetches new items from the relay; --follow keeps going until Ctrl-C.',
  ),
  phones: sub(
    'phones list [--json] | phones add | phones remove <phoneId>',
    "Phones paired with the hub. The phone id is the hub's (its log and phones remove\nuse it); the relay account id is shown apart.",
  ),
  view: sub(
    'view [--port N] [--host ADDR] [--no-sync]',
    'Serves the local web viewer and prints its URL.',
  ),
  unlock: sub('unlock [--yes] [--wait S]', "Unlocks a locked hub with this phone's escrowed key."),
  recovery: sub(
    'recovery show [--json] | recovery export-header FILE',
    "The hub's recovery key and LUKS header backup kept on this phone.",
  ),
  updates: sub('updates [--json]', "The hub's software update outcomes."),
};

interface Args {
  readonly positional: string[];
  readonly opts: Map<string, string>;
}

const OPTIONS = {
  dir: { type: 'string' },
  out: { type: 'string', short: 'o' },
  seconds: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'log-level': { type: 'string' },
  wait: { type: 'string' },
  'heartbeat-every': { type: 'string' },
  'refresh-every': { type: 'string' },
  'offline-after': { type: 'string' },
  endpoint: { type: 'string' },
  p256dh: { type: 'string' },
  auth: { type: 'string' },
  json: { type: 'boolean' },
  'no-sync': { type: 'boolean' },
  yes: { type: 'boolean' },
  follow: { type: 'boolean' },
} as const;

/** Options keyed as typed ('--dir', '-o'), the way the subcommands (and unlock-cli.ts) read them. */
function parse(argv: readonly string[]): Args {
  const { values, positionals } = parseOptions(argv, OPTIONS, true);
  const opts = new Map<string, string>();
  for (const [k, v] of Object.entries(values))
    opts.set(k === 'out' ? '-o' : `--${k}`, v === true ? '1' : String(v));
  return { positional: positionals, opts };
}

function posInt(v: string | undefined, what: string): number | undefined {
  return intOption(v, what, 1, 999_999_999);
}

interface Ctx {
  readonly dir: string;
  readonly fs: DurableFs;
  readonly log: Logger;
  readonly out: (t: string) => void;
  readonly err: (t: string) => void;
}

/** The E2EE phone when paired; the static development key when that is all there is. */
export async function openCrypto(c: Ctx): Promise<CompanionCrypto> {
  if (await pathExists(`${e2eeDir(c.dir)}/phone.json`)) {
    const [{ E2eePhone }, { LazyMlsProfile }, { E2eeCrypto }, { registerAppTopics }] =
      await Promise.all([
        import('./e2ee/phone.js'),
        import('../protocol/mls-profile.js'),
        import('./e2ee-crypto.js'),
        import('./topics.js'),
      ]);
    const phone = await E2eePhone.open({
      dir: e2eeDir(c.dir),
      fs: c.fs,
      profile: new LazyMlsProfile(),
    });
    if (phone) {
      const crypto = new E2eeCrypto(phone);
      registerAppTopics(crypto, { dir: c.dir, fs: c.fs });
      return crypto;
    }
  }
  const key = await c.fs.readIfExists(devKeyPath(c.dir));
  if (key?.length === 32) {
    c.err(
      'vigil app: WARNING: development mode — items use a static key, not MLS. Never use this with a real camera.\n',
    );
    return new StaticKeyCrypto(key);
  }
  throw new VigilError('ENOTPAIRED', `not paired: no E2EE state in ${c.dir} (run vigil app pair)`);
}

async function needAccount(c: Ctx): Promise<RelayAccount> {
  const a = await loadAccount(c.fs, c.dir);
  if (!a)
    throw new VigilError(
      'ENOTPAIRED',
      `no relay account in ${c.dir}: pair with vigil app pair (the local run's phone: --dir .vigil-dev/app)`,
    );
  return a;
}

async function syncAndStore(
  c: Ctx,
): Promise<{ store: ItemStore; crypto: CompanionCrypto; client: RelayClient; note: string }> {
  const acct = await needAccount(c);
  const crypto = await openCrypto(c);
  const client = new RelayClient({ url: acct.url, token: acct.token });
  const store = new ItemStore(c.dir, c.fs);
  const r = await new Syncer({ client, crypto, store, logger: c.log }).syncOnce();
  const note = `${r.stored.length} new item(s)${r.pending ? `, ${r.pending} still uploading` : ''}${r.messages.length ? `; hub: ${r.messages.join('; ')}` : ''}`;
  return { store, crypto, client, note };
}

/** `vigil app list`: sync first when the relay answers; the events kept here either way. */
async function list(c: Ctx, a: Args): Promise<number> {
  const store = new ItemStore(c.dir, c.fs);
  let note: string;
  let synced = true;
  try {
    ({ note } = await syncAndStore(c));
  } catch (e) {
    // not paired: the hint of needAccount/openCrypto is the answer; anything else is the relay
    if (e instanceof VigilError && e.code === 'ENOTPAIRED') throw e;
    synced = false;
    note = `not synced (${reasonOf(e)}): showing the events kept in ${c.dir}`;
  }
  const events = eventsOf(await store.list());
  if (a.opts.has('--json')) {
    c.out(JSON.stringify({ events, synced }, null, 2) + '\n');
    return 0;
  }
  c.err(`${note}\n`);
  if (events.length === 0) {
    c.out('no events\n');
    return 0;
  }
  c.out(formatEvents(events));
  return 0;
}

/** The human table of `vigil app list`, with column headers. */
export function formatEvents(events: ReturnType<typeof eventsOf>): string {
  const rows = [
    `${'SEQ'.padStart(6)}  ${'STARTED (UTC)'.padEnd(24)}  ${'LENGTH'.padStart(8)}  ${'SIZE'.padStart(12)}  THUMBNAIL`,
  ];
  for (const e of events)
    rows.push(
      `${String(e.seq).padStart(6)}  ${new Date(e.startedAt).toISOString().padEnd(24)}  ${`${(e.durationMs / 1000).toFixed(1)} s`.padStart(8)}  ${`${e.size} B`.padStart(12)}  ${e.thumbnail !== null ? String(e.thumbnail) : '-'}`,
    );
  return rows.join('\n') + '\n';
}

async function fetchItem(c: Ctx, a: Args): Promise<number> {
  const seq = posInt(a.positional[1], 'the item number');
  const outFile = a.opts.get('-o');
  if (seq === undefined || outFile === undefined)
    throw new UsageError('fetch needs <seq> and -o FILE');
  const { store, crypto } = await syncAndStore(c);
  const got = await store.get(seq);
  if (!got) throw new VigilError('ENOTFOUND', `no item ${seq} (see vigil app list)`);
  // Streamed: each chunk goes to a temp file as it is authenticated (the item is never held
  // whole); the file takes the output name only once the end record checked out. A tampered
  // or truncated item leaves no output file (and an existing one untouched).
  const out = await c.fs.createAtomic(outFile, 'app-export');
  let opened: Awaited<ReturnType<typeof streamItem>>;
  try {
    opened = await streamItem(crypto, got.bytes, (p) => out.append([p]));
  } catch (e) {
    await out.discard();
    throw e;
  }
  await out.commit();
  c.out(
    `${outFile}: ${out.bytes} bytes, ${opened.summary.codec}, ${(opened.trailer.durationMs / 1000).toFixed(1)} s\n`,
  );
  return 0;
}

async function live(c: Ctx, a: Args): Promise<number> {
  const outFile = a.opts.get('-o');
  if (outFile === undefined) throw new UsageError('live needs -o FILE');
  const seconds = posInt(a.opts.get('--seconds'), '--seconds');
  const waitS = posInt(a.opts.get('--wait'), '--wait') ?? 20;
  const acct = await needAccount(c);
  const crypto = await openCrypto(c);
  const client = new RelayClient({ url: acct.url, token: acct.token });
  const { E2eeCrypto } = await import('./e2ee-crypto.js');
  const ac = new AbortController();
  const stop = (): void => {
    ac.abort();
  };
  process.once('SIGINT', stop);
  // The hub's answer arrives through the mailbox: keep syncing while we wait and watch.
  const store = new ItemStore(c.dir, c.fs);
  let link: HubLink | undefined;
  let syncing: Promise<void> = Promise.resolve();
  let expect: string | undefined;
  let renew: NodeJS.Timeout | undefined;
  const maxS = Math.min(3600, seconds ?? DEFAULT_LIVE_SECONDS);
  if (crypto instanceof E2eeCrypto) {
    link = linkOver(crypto, client);
    syncing = new Syncer({ client, crypto, store, logger: c.log }).run(ac.signal);
    const answer = await link.requestLive(maxS, waitS * 1000, ac.signal);
    if (!answer.ok) {
      ac.abort();
      link.close();
      process.off('SIGINT', stop);
      await syncing;
      c.err(`vigil app live: ${answer.message}\n`);
      return 1;
    }
    expect = answer.started.itemId;
    c.err('live: starting\u2026\n');
    const l = link;
    renew = setInterval(() => {
      l.renewLive(maxS).catch(() => undefined);
    }, RENEW_EVERY_S * 1000);
  }
  const out = createWriteStream(outFile);
  const timer = seconds === undefined ? undefined : setTimeout(stop, seconds * 1000);
  let bytes = 0;
  // Nothing within --wait after the hub said yes: give up with a reason, not 0 bytes and 0.
  const firstData = setTimeout(stop, waitS * 1000);
  try {
    await followLive(
      client,
      crypto,
      {
        onStart: (s) => {
          c.err(`live: ${s.codec}\n`);
        },
        onData: (plain) => {
          clearTimeout(firstData);
          bytes += plain.length;
          out.write(plain);
        },
        onEnd: () => {
          ac.abort();
        },
      },
      ac.signal,
      expect,
    );
  } finally {
    clearTimeout(firstData);
    if (timer) clearTimeout(timer);
    if (renew) clearInterval(renew);
    process.off('SIGINT', stop);
    await new Promise<void>((r) => out.end(r));
    ac.abort();
    await syncing;
    if (link) {
      await link.stopLive().catch(() => undefined);
      link.close();
    }
  }
  if (bytes === 0) {
    c.err(`vigil app live: no live video arrived within ${waitS} s\n`);
    return 1;
  }
  c.out(`${outFile}: ${bytes} bytes of live video\n`);
  return 0;
}

/** `vigil app sync [--follow]`: one pass, or keep syncing with the companion's schedule. */
async function sync(c: Ctx, a: Args): Promise<number> {
  if (!a.opts.has('--follow')) {
    const { note } = await syncAndStore(c);
    c.out(`${note}\n`);
    return 0;
  }
  const secs = (o: string): number | undefined => {
    const v = posInt(a.opts.get(o), o);
    return v === undefined ? undefined : v * 1000;
  };
  const heartbeatMs = secs('--heartbeat-every');
  const refreshMs = secs('--refresh-every');
  const offlineAfterMs = secs('--offline-after');
  const acct = await needAccount(c);
  const crypto = await openCrypto(c);
  const { E2eeCrypto } = await import('./e2ee-crypto.js');
  if (!(crypto instanceof E2eeCrypto))
    throw new VigilError('ENOTPAIRED', 'sync --follow needs a paired phone (MLS)');
  const client = new RelayClient({ url: acct.url, token: acct.token });
  const link = linkOver(crypto, client, offlineAfterMs !== undefined ? { offlineAfterMs } : {});
  let wasOffline = false;
  link.onStatus((s) => {
    if (s.offline && !wasOffline) c.err(`ALERT: ${s.message ?? 'hub offline'}\n`);
    if (!s.offline && wasOffline) c.err('hub is back online\n');
    wasOffline = s.offline;
    if (s.health !== null) c.err(`${s.health}\n`);
  });
  const follow = new FollowScheduler({
    sendHeartbeat: async (refresh) => {
      await client.postUp('config', await crypto.phone.heartbeat({ refresh }));
    },
    logger: c.log,
    dir: c.dir,
    fs: c.fs,
    ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
    ...(refreshMs !== undefined ? { refreshMs } : {}),
  });
  const ac = new AbortController();
  const store = new ItemStore(c.dir, c.fs);
  const running = new Syncer({ client, crypto, store, logger: c.log }).run(ac.signal, (items) => {
    for (const it of items) c.out(`stored ${it.seq} (${it.summary.kind})\n`);
  });
  await follow.start();
  c.err('following (Ctrl-C to stop)\n');
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await follow.stop();
  link.close();
  ac.abort();
  await running;
  return 0;
}

async function heartbeat(c: Ctx): Promise<number> {
  const acct = await needAccount(c);
  const crypto = await openCrypto(c);
  const client = new RelayClient({ url: acct.url, token: acct.token });
  const { seq } = await client.postUp('config', await crypto.heartbeat());
  c.out(`heartbeat sent (${seq})\n`);
  // The hub answers through the mailbox: wait a little for its reply.
  const store = new ItemStore(c.dir, c.fs);
  const syncer = new Syncer({ client, crypto, store, logger: c.log });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const r = await syncer.syncOnce();
    if (r.messages.length > 0) {
      for (const m of r.messages) c.out(`hub: ${m}\n`);
      return 0;
    }
    await client.list({ waitMs: Math.max(0, Math.min(5000, deadline - Date.now())) });
  }
  c.out('no answer from the hub yet (it may be offline; the heartbeat waits on the relay)\n');
  return 0;
}

async function phones(c: Ctx, a: Args): Promise<number> {
  const sub = a.positional[1];
  const acct = await needAccount(c);
  const client = new RelayClient({ url: acct.url, token: acct.token });
  const crypto = await openCrypto(c);
  const { E2eeCrypto } = await import('./e2ee-crypto.js');
  if (sub === 'list') {
    // Phones are known to the hub; the relay account list is visible to the hub only.
    // The phone id is the hub's (its log, phones remove); the relay account id is the relay's.
    const e2ee = crypto instanceof E2eeCrypto ? crypto.phone : undefined;
    const me = {
      phoneId: e2ee?.phoneId ?? null,
      admin: e2ee?.admin ?? null,
      hub: acct.deviceId,
      relayAccount: acct.phoneId,
    };
    if (a.opts.has('--json')) c.out(`${JSON.stringify({ phones: [{ ...me, self: true }] })}\n`);
    else
      c.out(
        `this phone: ${me.phoneId ?? '(development key: no phone id)'}${me.admin === true ? ' (admin)' : ''}\n` +
          `  hub ${me.hub}, relay account ${me.relayAccount}\n`,
      );
    return 0;
  }
  if (!(crypto instanceof E2eeCrypto))
    throw new VigilError(
      'ENOTPAIRED',
      'adding and removing phones needs a paired phone (MLS), not the development key',
    );
  if (sub !== 'add' && sub !== 'remove') throw subcommandError(sub, ['list', 'add', 'remove']);
  const { PhonesAdmin, PhonesError } = await import('./phones.js');
  const syncer = new Syncer({ client, crypto, store: new ItemStore(c.dir, c.fs), logger: c.log });
  const admin = new PhonesAdmin({
    crypto,
    client,
    sync: () => syncer.syncOnce(),
    dir: c.dir,
    fs: c.fs,
  });
  try {
    if (sub === 'add') {
      c.out(`${JSON.stringify(await admin.invite())}\n`);
      c.err(
        "give this invite to the new phone: vigil app pair --invite '<this line>' (secret, single use, 15 minutes; the hub's pairing window must be open)\n",
      );
      return 0;
    }
    const id = a.positional[2];
    if (id === undefined) throw new UsageError('phones remove needs <phoneId>');
    await admin.remove(id);
    c.out(`phone ${id} removed\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof PhonesError)) throw e;
    c.err(`vigil app phones: ${e.message}\n`);
    return 1;
  }
}

async function view(c: Ctx, a: Args, ctx: CommandContext): Promise<number> {
  const port = portOption(a.opts.get('--port'), '--port', true);
  const acct = await loadAccount(c.fs, c.dir);
  const crypto = await openCrypto(c);
  const store = new ItemStore(c.dir, c.fs);
  const client = acct ? new RelayClient({ url: acct.url, token: acct.token }) : undefined;
  const { E2eeCrypto } = await import('./e2ee-crypto.js');
  // With a paired phone: live on request, the offline alert, and the heartbeat schedule.
  const paired = client && crypto instanceof E2eeCrypto ? { client, crypto } : undefined;
  const link = paired ? linkOver(paired.crypto, paired.client) : undefined;
  const follow = paired
    ? new FollowScheduler({
        sendHeartbeat: async (refresh) => {
          await paired.client.postUp('config', await paired.crypto.phone.heartbeat({ refresh }));
        },
        logger: c.log,
        dir: c.dir,
        fs: c.fs,
      })
    : undefined;
  const { NoticeFeed } = await import('./push.js');
  const feed = new NoticeFeed();
  if (paired) paired.crypto.onNotice((n) => feed.addNotice(n));
  const { RelayContact } = await import('./relay-contact.js');
  const contact = new RelayContact();
  const syncer = client ? new Syncer({ client, crypto, store, logger: c.log, contact }) : undefined;
  const { PhonesAdmin } = await import('./phones.js');
  const phonesAdmin =
    paired && syncer
      ? new PhonesAdmin({
          crypto: paired.crypto,
          client: paired.client,
          sync: () => syncer.syncOnce(),
          dir: c.dir,
          fs: c.fs,
        })
      : undefined;
  const viewer = await startViewer({
    store,
    crypto,
    logger: c.log,
    ...(client ? { contact } : {}),
    ...(phonesAdmin ? { phones: phonesAdmin } : {}),
    notices: {
      feed,
      ...(paired ? { receive: (b: Uint8Array) => paired.crypto.openPushed(b) } : {}),
      ...(acct ? { deviceId: acct.deviceId } : {}),
    },
    ...(client ? { client } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(link ? { link } : {}),
  });
  if (!a.opts.has('--no-sync')) await follow?.start();
  const ac = new AbortController();
  let sync: Promise<void> = Promise.resolve();
  if (syncer && !a.opts.has('--no-sync')) sync = syncer.run(ac.signal);
  ctx.stdout(`${viewer.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await follow?.stop();
  link?.close();
  ac.abort();
  await viewer.close();
  await sync;
  return 0;
}

export const command: Command = {
  name: 'app',
  summary: 'companion: pair, list, fetch, live, view',
  usage: USAGE,
  subcommands: {
    ...SUBCOMMANDS,
    pair: PAIR_USAGE,
  },
  badValueExamples: [
    ['list', '--log-level', 'loud'],
    ['view', '--port', 'abc'],
    ['live', '-o', '/dev/null', '--seconds', 'x'],
    ['unlock', '--wait', 'soon'],
    ['pair', '--qr', 'VIGIL1:x', '--timeout', 'abc'],
  ],
  async run(ctx: CommandContext): Promise<number> {
    const sub = ctx.argv[0];
    if (sub === 'pair') {
      // Loaded only when used. A literal specifier: the shipped bundle (image/app-bundle.ts)
      // must see it to include the module.
      const { pairCommand } = await import('./pair/cli.js');
      return pairCommand.run({ ...ctx, argv: ctx.argv.slice(1) });
    }
    const a = parse(ctx.argv);
    const level = choiceOption(a.opts.get('--log-level'), '--log-level', LOG_LEVELS) ?? 'warn';
    const c: Ctx = {
      dir: a.opts.get('--dir') ?? defaultAppDir(ctx.env),
      fs: new DurableFs(),
      log: new JsonLogger('vigil.app', {
        level,
        write: (l) => {
          ctx.stderr(l + '\n');
        },
      }),
      out: ctx.stdout,
      err: ctx.stderr,
    };
    switch (a.positional[0]) {
      case 'list':
        return list(c, a);
      case 'fetch':
        return fetchItem(c, a);
      case 'live':
        return live(c, a);
      case 'heartbeat':
        return heartbeat(c);
      case 'sync':
        return sync(c, a);
      case 'phones':
        return phones(c, a);
      case 'view':
        return view(c, a, ctx);
      case 'unlock':
      case 'recovery': {
        // storage area (docs/storage.md): phone unlock and recovery escrow
        const { storageAppCommand } = await import('./unlock-cli.js');
        return storageAppCommand(c, a.positional, a.opts, {
          needAccount,
          sync: async () => {
            await syncAndStore(c);
          },
        });
      }
      case 'push': {
        const acct = await needAccount(c);
        const client = new RelayClient({ url: acct.url, token: acct.token });
        const { pushCommand } = await import('./push.js');
        const sub = a.positional[1];
        let receive: ((b: Uint8Array) => Promise<Inbound>) | undefined;
        if (sub === 'open') {
          const crypto = await openCrypto(c);
          const { E2eeCrypto } = await import('./e2ee-crypto.js');
          if (crypto instanceof E2eeCrypto) receive = (b) => crypto.receiveInbound(b);
        }
        return pushCommand(
          {
            client,
            fs: c.fs,
            deviceId: acct.deviceId,
            out: c.out,
            ...(receive ? { receive } : {}),
          },
          a.positional,
          a.opts,
        );
      }
      case 'updates': {
        // ota area (docs/ota.md): outcomes the hub reported over the config group
        const { showUpdates } = await import('./ota-reports.js');
        return showUpdates(
          { dir: c.dir, fs: c.fs, out: c.out },
          { json: a.opts.has('--json') },
          async () => {
            await syncAndStore(c);
          },
        );
      }
      case undefined:
      default:
        throw subcommandError(a.positional[0], [...Object.keys(SUBCOMMANDS), 'pair']);
    }
  },
};
