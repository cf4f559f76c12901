/**
 * `vigil app pair --qr <payload | image file> [...]`: the companion's pairing.
 *
 *  1. read the QR label (the payload text, or a photo/scan decoded with zbarimg);
 *  2. derive the hotspot SSID, WPA2 passphrase and MLS PSK (protocol/identity.ts);
 *  3. with --interface: join the hub's hotspot through our own wpa_supplicant;
 *  4. run the MLS handshake with the hub's frame server;
 *  5. with --home-ssid: send the home Wi-Fi credentials over the config group
 *     (the password comes from a file or stdin, never from argv);
 *  6. with --relay: meet the hub at the relay: claim the rendezvous the hub
 *     offers with the pairing token once it is on its home network, and save
 *     the phone's relay account (<dir>/relay.json).
 *
 * Already paired (E2EE state in --dir)? Step 4 is skipped and only the Wi-Fi
 * credentials are sent again (after the hub reported a wrong password).
 */
import { readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError, parseOptions, portOption, secondsOption } from '../../base/command.js';
import type { Command, CommandContext } from '../../base/command.js';
import { VigilError, reasonOf } from '../../base/errors.js';
import { parseQrPayload } from '../../protocol/qr-payload.js';
import { deriveIdentity, formatDeviceId } from '../../protocol/identity.js';
import { DurableFs } from '../../hw/os/fs.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import { run } from '../../hw/os/run.js';
import { WpaSupplicantStation, WifiJoinError } from '../../hw/wifi/station.js';
import { LazyMlsProfile } from '../../protocol/mls-profile.js';
import type { ExternalPsk } from '../../protocol/mls-profile.js';
import { PairingInitiator } from '../e2ee/pairing-initiator.js';
import { E2eePhone } from '../e2ee/phone.js';
import { defaultAppDir, e2eeDir } from '../account.js';
import { PairingClient } from './client.js';
import { InviteError, parseInvite, readInviteArg, saveHotspot } from './invite.js';
import type { Hotspot } from './invite.js';
import { RelayClient, RelayHttpError } from '../../protocol/relay-client.js';
import { EnrollTokenSchema, serviceUrlProblem } from '../../protocol/services.js';
import { saveAccount } from '../account.js';
import type { RelayAccount } from '../account.js';
import { PAIR_USAGE } from './usage.js';

interface Io {
  readonly stdin?: () => Promise<string>;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function qrText(value: string): Promise<string> {
  const isFile = await stat(value).then(
    (st) => st.isFile(),
    () => false,
  );
  if (!isFile) return value;
  let out: string;
  try {
    out = (
      await run('zbarimg', ['-q', '--raw', '-Sdisable', '-Sqrcode.enable', value], {
        timeoutMs: 30_000,
      })
    ).stdout.toString('utf8');
  } catch (e) {
    throw new UsageError(
      `no QR code could be read from ${value} (${e instanceof Error ? (e.message.split(':')[0] ?? '') : ''})`,
    );
  }
  const lines = out.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== 1)
    throw new UsageError(`expected one QR code in ${value}, found ${lines.length}`);
  return lines[0] ?? '';
}

/** `--set-relay` and its token file, checked like the hub checks them (protocol/services.ts). */
async function setRelayFlags(
  url: string | undefined,
  tokenFile: string | undefined,
): Promise<{ url: string; enrollToken?: string } | undefined> {
  if (url === undefined) {
    if (tokenFile !== undefined)
      throw new UsageError('--set-relay-enroll-token-file needs --set-relay');
    return undefined;
  }
  const problem = serviceUrlProblem(url);
  if (problem !== undefined) throw new UsageError(`--set-relay ${problem}`);
  if (tokenFile === undefined) return { url };
  let raw: string;
  try {
    raw = (await readFile(tokenFile, 'utf8')).replace(/\r?\n$/, '');
  } catch (e) {
    throw new UsageError(
      `--set-relay-enroll-token-file: cannot read ${tokenFile} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const r = EnrollTokenSchema.safeParse(raw);
  if (!r.success)
    throw new UsageError(
      `--set-relay-enroll-token-file: the token ${r.error.issues[0]?.message ?? 'is invalid'}`,
    );
  return { url, enrollToken: r.data };
}

export async function pairMain(ctx: CommandContext, io: Io = {}): Promise<number> {
  const { values: v } = parseOptions(ctx.argv, {
    qr: { type: 'string' },
    invite: { type: 'string' },
    interface: { type: 'string' },
    address: { type: 'string' },
    'no-dhcp': { type: 'boolean' },
    country: { type: 'string' },
    hub: { type: 'string' },
    'home-ssid': { type: 'string' },
    'home-password-file': { type: 'string' },
    dir: { type: 'string' },
    relay: { type: 'string' },
    'set-relay': { type: 'string' },
    'set-relay-enroll-token-file': { type: 'string' },
    timeout: { type: 'string' },
  });
  const str = (k: keyof typeof v): string | undefined => {
    const x = v[k];
    return typeof x === 'string' ? x : undefined;
  };
  const qrValue = str('qr');
  const inviteValue = str('invite');
  if ((qrValue === undefined) === (inviteValue === undefined))
    throw new UsageError('give either --qr <payload | image file> or --invite <invite | file>');
  const timeoutS = secondsOption(str('timeout'), '--timeout') ?? 60;
  const [host = '10.42.0.1', portText = '7767'] = (str('hub') ?? '10.42.0.1:7767').split(':');
  const port = portOption(portText, '--hub HOST[:PORT]') ?? 7767;
  const homeSsid = str('home-ssid');
  const pwFile = str('home-password-file');
  if ((homeSsid === undefined) !== (pwFile === undefined))
    throw new UsageError('--home-ssid and --home-password-file go together');
  const hubRelay = await setRelayFlags(str('set-relay'), str('set-relay-enroll-token-file'));
  if (hubRelay !== undefined && homeSsid === undefined)
    throw new UsageError('--set-relay needs --home-ssid: it travels with the Wi-Fi settings');
  const relayUrl = str('relay') ?? hubRelay?.url;
  if (relayUrl !== undefined) {
    if (homeSsid === undefined)
      throw new UsageError('--relay needs --home-ssid: the hub meets us once it is online');
    if (!URL.canParse(relayUrl) || !/^https?:$/.test(new URL(relayUrl).protocol))
      throw new UsageError('--relay: not an http(s) URL');
  }

  // what pairing needs: the hub's id, its hotspot (when we join it) and the MLS PSK
  let deviceId: string;
  let hotspot: Hotspot | undefined;
  let psk: ExternalPsk;
  let fromLabel = false;
  if (qrValue !== undefined) {
    const parsed = parseQrPayload(await qrText(qrValue));
    if (!parsed.ok) throw new UsageError(`${parsed.reason} [${parsed.code}]`);
    const d = deriveIdentity(parsed.value.secret, parsed.value.deviceId);
    deviceId = parsed.value.deviceId;
    hotspot = { ssid: d.ssid, passphrase: d.wpaPassphrase };
    psk = { id: d.mlsPskId, secret: d.mlsPsk };
    fromLabel = true;
  } else {
    let inv;
    try {
      inv = parseInvite(await readInviteArg(inviteValue ?? ''));
    } catch (e) {
      if (e instanceof InviteError) throw new UsageError(e.message);
      throw e;
    }
    deviceId = inv.deviceId;
    hotspot = inv.hotspot;
    psk = inv.psk;
  }
  const say = (s: string): void => {
    ctx.stdout(`${s}\n`);
  };
  say(
    `hub ${/^[A-Z2-7]{16}$/.test(deviceId) ? formatDeviceId(deviceId) : deviceId}${hotspot ? ` (hotspot ${hotspot.ssid})` : ''}`,
  );

  let homePassword: string | undefined;
  if (pwFile !== undefined) {
    const raw = pwFile === '-' ? await (io.stdin ?? readStdin)() : await readFile(pwFile, 'utf8');
    homePassword = raw.replace(/\r?\n$/, '');
  }

  const dir = str('dir') ?? defaultAppDir(ctx.env);
  const iface = str('interface');
  let station: WpaSupplicantStation | undefined;
  if (iface !== undefined && hotspot === undefined)
    throw new UsageError(
      '--interface: this invite carries no hotspot (the admin phone did not pair from the label); join the hub some other way and give --hub',
    );
  if (iface !== undefined && hotspot !== undefined) {
    const d = hotspot;
    const address = str('address');
    station = new WpaSupplicantStation({
      // the supplicant's config, control socket and pid live in our own state directory:
      // never in a system (or a hub's) /run/vigil on the same machine
      paths: new HostPaths(join(dir, 'wifi')),
      interface: iface,
      countryCode: str('country') ?? 'DE',
      addressing:
        address !== undefined
          ? { static: address }
          : v['no-dhcp'] === true
            ? 'none'
            : { dhcp: ['busybox', 'udhcpc', '-i', iface, '-n', '-q', '-t', '5'] },
      joinTimeoutMs: timeoutS * 1000,
    });
    try {
      await station.join({ ssid: d.ssid, passphrase: d.passphrase });
    } catch (e) {
      if (e instanceof WifiJoinError && e.code === 'EWIFI_WRONG_PASSWORD') {
        throw new VigilError(
          'EPAIR_WIFI',
          `the hub's hotspot ${d.ssid} rejected the passphrase from this ${fromLabel ? 'label (is it the right label?)' : 'invite'}`,
        );
      }
      if (e instanceof WifiJoinError && e.code === 'EWIFI_NOT_FOUND') {
        throw new VigilError(
          'EPAIR_WIFI',
          `hotspot ${d.ssid} not found: press the button on the hub to open pairing, and stay close`,
        );
      }
      throw e;
    }
    say(`joined hotspot ${d.ssid}`);
  }
  try {
    const fs = new DurableFs();
    const profile = new LazyMlsProfile();
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let phone = await E2eePhone.open({ dir: e2eeDir(dir), fs, profile });
    const client = await PairingClient.connectRetrying(host, port, timeoutS * 1000);
    try {
      if (phone) say('already paired: sending Wi-Fi settings only');
      else {
        const ini = new PairingInitiator({
          dir: e2eeDir(dir),
          fs,
          profile,
          psk,
        });
        phone = await client.pair(ini);
        say(
          `paired (MLS) with hub ${/^[A-Z2-7]{16}$/.test(deviceId) ? formatDeviceId(deviceId) : deviceId}${fromLabel ? '' : ' (by invite)'}`,
        );
        // an admin can hand the hotspot on with its invites (never the label secret)
        if (hotspot !== undefined) await saveHotspot(fs, dir, hotspot);
      }
      if (homeSsid !== undefined && homePassword !== undefined) {
        const token = await client.sendCredentials(
          phone,
          homeSsid,
          homePassword,
          undefined,
          hubRelay,
        );
        if (hubRelay !== undefined) say(`the hub uses the relay ${hubRelay.url} from now on`);
        await writeFile(join(dir, 'pairing-token'), `${token}\n`, { mode: 0o600 });
        say(
          `hub accepted the Wi-Fi settings and is joining "${homeSsid}"; pairing token saved in ${join(dir, 'pairing-token')}`,
        );
        if (relayUrl !== undefined) {
          client.close();
          await station?.leave();
          station = undefined;
          const acct = await meetAtRelay(relayUrl, token, timeoutS * 1000);
          await saveAccount(fs, dir, acct);
          say(`met the hub at the relay (relay account ${acct.phoneId})`);
        }
      }
    } finally {
      client.close();
    }
  } finally {
    await station?.leave();
  }
  return 0;
}

/**
 * When to ask the relay for the hub's rendezvous (ms before each try; the last repeats).
 * The hub needs tens of seconds to leave its hotspot, join the home network and offer it
 * (longer when the relay does not answer it at once: it retries with backoff), so few,
 * spaced tries (about 5 in the first two minutes), within the failure budget below.
 */
export const MEET_SCHEDULE_MS: readonly number[] = [
  8000, 8000, 12_000, 16_000, 24_000, 32_000, 45_000, 60_000,
];

/**
 * The relay locks an address out after 10 failed claims within 10 minutes (relay/limits.ts,
 * `lockoutFailures`, `lockoutWindowMs`), and a claim of a token not offered yet is such a
 * failure (it must be: "not offered yet" and "never offered" are the same answer, or the relay
 * would be an oracle for guessed tokens). An honest phone waiting for a slow hub therefore
 * spends at most 8 failures in any 10 minutes: 2 stay for a mistyped retry or a second phone.
 */
export const CLAIM_BUDGET = { failures: 8, windowMs: 10 * 60_000 } as const;

/**
 * The wait before claim number `i` (0-based), given when the earlier claims failed: the
 * schedule's step, or longer when the next failure would pass the budget (until the oldest
 * failure that counts ages out of the window).
 */
export function claimDelayMs(
  i: number,
  failedAt: readonly number[],
  now: number,
  schedule: readonly number[] = MEET_SCHEDULE_MS,
  budget: { readonly failures: number; readonly windowMs: number } = CLAIM_BUDGET,
): number {
  const step = schedule[Math.min(i, schedule.length - 1)] ?? 1000;
  const recent = failedAt.filter((t) => now - t < budget.windowMs).sort((x, y) => x - y);
  if (recent.length < budget.failures) return step;
  // after the wait at most budget - 1 failures count, so one more stays within the budget
  const ageOut = recent[recent.length - budget.failures] ?? now;
  return Math.max(step, ageOut + budget.windowMs - now);
}

/** A 429 with the relay's `retryAfterMs` (an address lockout, or a rate limit). */
function retryAfterMs(e: unknown): number | undefined {
  if (!(e instanceof RelayHttpError) || e.status !== 429) return undefined;
  const ms = (e.body as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/**
 * Claim the hub's rendezvous: the hub offers it once it joined its home network,
 * so "not there yet" (404) and an unreachable relay are retried until the deadline, paced
 * by `claimDelayMs`; a lockout (429, from some other client at this address) is waited out
 * when it ends before the deadline.
 */
export async function meetAtRelay(
  url: string,
  token: string,
  timeoutMs: number,
  schedule: readonly number[] = MEET_SCHEDULE_MS,
  budget: { readonly failures: number; readonly windowMs: number } = CLAIM_BUDGET,
): Promise<RelayAccount> {
  const anon = new RelayClient({ url });
  const deadline = Date.now() + timeoutMs;
  const failedAt: number[] = [];
  let last: unknown;
  let extra = 0;
  for (let i = 0; ; i++) {
    const wait = Math.max(claimDelayMs(i, failedAt, Date.now(), schedule, budget), extra);
    extra = 0;
    if (Date.now() + wait > deadline) break;
    await new Promise((r) => setTimeout(r, wait));
    try {
      const c = await anon.claimRendezvous(token);
      return { url, deviceId: c.deviceId, phoneId: c.id, token: c.token };
    } catch (e) {
      last = e;
      const locked = retryAfterMs(e);
      if (locked !== undefined) {
        extra = locked; // not a failure of ours: the relay refused before looking at the token
        continue;
      }
      if (e instanceof RelayHttpError && e.status === 404) failedAt.push(Date.now());
      // a refusal other than "not offered yet" (used token) will not change by waiting
      else if (e instanceof RelayHttpError) break;
    }
  }
  throw new VigilError(
    'EPAIR_RELAY',
    `the hub did not meet us at the relay ${url} (${last === undefined ? 'timed out' : reasonOf(last)})`,
    { cause: last },
  );
}

export const pairCommand: Command = {
  name: 'pair',
  summary: 'pair with a hub from its QR label',
  usage: PAIR_USAGE,
  badValueExamples: [['--qr', 'VIGIL1:x', '--timeout', 'abc']],
  run: (ctx) => pairMain(ctx),
};
