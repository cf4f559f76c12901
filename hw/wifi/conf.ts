/**
 * Typed writers for hostapd, dnsmasq and wpa_supplicant configuration.
 *
 * Why not `hostapd-config` (docs/decisions.md): it writes WPA1 + TKIP by
 * default, has no country code, no passphrase check and no newline escaping,
 * and restarts through systemctl. Here every value is validated by a zod
 * schema before a single line is written: security settings are not options
 * (WPA2-PSK, CCMP only, no TKIP, no WPS), strings with control characters are
 * rejected (a newline would inject directives), the SSID is written hex-encoded
 * (`ssid2=` / `ssid=<hex>`) so no character needs escaping, and the station's
 * PSK is written as the PBKDF2 hex key, never as the passphrase.
 */
import { pbkdf2Sync } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../../base/errors.js';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

const noControl = (s: string): boolean => !CONTROL.test(s);

export const InterfaceNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,15}$/, 'interface name: 1-15 of A-Z a-z 0-9 _ . -');

export const SsidSchema = z
  .string()
  .refine((s) => {
    const n = Buffer.byteLength(s, 'utf8');
    return n >= 1 && n <= 32;
  }, 'SSID must be 1-32 bytes')
  .refine(noControl, 'SSID must not contain control characters (newlines would inject directives)');

/** WPA2 passphrase: 8..63 printable ASCII characters (IEEE 802.11i, Annex H.4). */
export const PassphraseSchema = z
  .string()
  .min(8, 'Wi-Fi passphrase must be at least 8 characters')
  .max(63, 'Wi-Fi passphrase must be at most 63 characters')
  .regex(
    /^[\x20-\x7e]*$/,
    'Wi-Fi passphrase must be printable ASCII (no newlines or control characters)',
  );

/** ISO 3166-1 alpha-2; sets the regulatory domain (allowed channels and power). */
export const CountryCodeSchema = z
  .string()
  .regex(/^[A-Z]{2}$/, 'country code: two upper-case letters (ISO 3166-1)');

const Ipv4Schema = z.ipv4();
const PathSchema = z
  .string()
  .regex(/^\/[^\s]*$/, 'path must be absolute without spaces')
  .refine(noControl, 'path must not contain control characters');

export const HostapdConfSchema = z.strictObject({
  interface: InterfaceNameSchema,
  ssid: SsidSchema,
  passphrase: PassphraseSchema,
  countryCode: CountryCodeSchema,
  /** 2.4 GHz channel 1-13 (every Pi radio has 2.4 GHz; phones find it fastest). */
  channel: z.number().int().min(1).max(13).default(6),
  ctrlDir: PathSchema,
  driver: z.enum(['nl80211']).default('nl80211'),
  /** Management frame protection: optional (phones without PMF can still join). */
  pmf: z.enum(['disabled', 'optional', 'required']).default('optional'),
  /** Cap on associated stations: pairing needs one phone. */
  maxStations: z.number().int().min(1).max(16).default(4),
});
export type HostapdConf = z.input<typeof HostapdConfSchema>;

function validate<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ValidationError(
      `${what}: ${i?.path.join('.') ?? ''} ${i?.message ?? 'invalid'}`.replace(/: {2}/, ': '),
    );
  }
  return r.data;
}

const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex');

export function renderHostapdConf(input: HostapdConf): string {
  const c = validate(HostapdConfSchema, input, 'hostapd config');
  const pmf = { disabled: 0, optional: 1, required: 2 }[c.pmf];
  return [
    '# written by vigil (hw/wifi/conf.ts); do not edit',
    `interface=${c.interface}`,
    `driver=${c.driver}`,
    `ctrl_interface=${c.ctrlDir}`,
    'ctrl_interface_group=0',
    `ssid2=${hex(c.ssid)}`,
    'utf8_ssid=1',
    `country_code=${c.countryCode}`,
    'ieee80211d=1',
    'hw_mode=g',
    `channel=${c.channel}`,
    'ieee80211n=1',
    'wmm_enabled=1',
    'auth_algs=1',
    'ignore_broadcast_ssid=0',
    `max_num_sta=${c.maxStations}`,
    // Security is not configurable: WPA2 (RSN) only, PSK, CCMP only.
    'wpa=2',
    'wpa_key_mgmt=WPA-PSK',
    'rsn_pairwise=CCMP',
    `ieee80211w=${pmf}`,
    `wpa_passphrase=${c.passphrase}`,
    'wps_state=0',
    '',
  ].join('\n');
}

export const DnsmasqConfSchema = z
  .strictObject({
    interface: InterfaceNameSchema,
    address: Ipv4Schema,
    rangeStart: Ipv4Schema,
    rangeEnd: Ipv4Schema,
    netmask: Ipv4Schema.default('255.255.255.0'),
    leaseSeconds: z.number().int().min(120).max(86_400).default(900),
    leaseFile: PathSchema,
    pidFile: PathSchema.optional(),
  })
  .refine(
    (c) => ipToInt(c.rangeStart) <= ipToInt(c.rangeEnd),
    'DHCP range start must not be after its end',
  );
export type DnsmasqConf = z.input<typeof DnsmasqConfSchema>;

export function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

/**
 * dnsmasq as a DHCP server only (port=0: no DNS), bound to the hotspot
 * interface, handing the phone an address next to the hub's. No router or DNS
 * option is sent, so a phone never tries to route the internet through the hub.
 */
export function renderDnsmasqConf(input: DnsmasqConf): string {
  const c = validate(DnsmasqConfSchema, input, 'dnsmasq config');
  return [
    '# written by vigil (hw/wifi/conf.ts); do not edit',
    'port=0',
    `interface=${c.interface}`,
    'bind-interfaces',
    'except-interface=lo',
    `listen-address=${c.address}`,
    'no-resolv',
    'no-hosts',
    'no-poll',
    'dhcp-authoritative',
    `dhcp-range=${c.rangeStart},${c.rangeEnd},${c.netmask},${c.leaseSeconds}s`,
    'dhcp-option=option:router',
    'dhcp-option=option:dns-server',
    `dhcp-leasefile=${c.leaseFile}`,
    ...(c.pidFile !== undefined ? [`pid-file=${c.pidFile}`] : []),
    '',
  ].join('\n');
}

/** The WPA2 PSK a passphrase stands for: PBKDF2-HMAC-SHA1(passphrase, ssid, 4096, 32). */
export function wpaPsk(passphrase: string, ssid: string): string {
  validate(PassphraseSchema, passphrase, 'passphrase');
  validate(SsidSchema, ssid, 'ssid');
  return pbkdf2Sync(passphrase, Buffer.from(ssid, 'utf8'), 4096, 32, 'sha1').toString('hex');
}

export const WpaSupplicantConfSchema = z.strictObject({
  ctrlDir: PathSchema,
  countryCode: CountryCodeSchema,
  network: z
    .strictObject({
      ssid: SsidSchema,
      passphrase: PassphraseSchema,
    })
    .optional(),
});
export type WpaSupplicantConf = z.input<typeof WpaSupplicantConfSchema>;

/** wpa_supplicant config: control socket, country, optionally one WPA2-PSK network. */
export function renderWpaSupplicantConf(input: WpaSupplicantConf): string {
  const c = validate(WpaSupplicantConfSchema, input, 'wpa_supplicant config');
  const lines = [
    '# written by vigil (hw/wifi/conf.ts); do not edit',
    `ctrl_interface=${c.ctrlDir}`,
    'update_config=0',
    `country=${c.countryCode}`,
    'ap_scan=1',
  ];
  if (c.network) {
    lines.push(
      'network={',
      `\tssid=${hex(c.network.ssid)}`,
      '\tscan_ssid=1',
      '\tkey_mgmt=WPA-PSK',
      '\tproto=RSN',
      '\tpairwise=CCMP',
      `\tpsk=${wpaPsk(c.network.passphrase, c.network.ssid)}`,
      '}',
    );
  }
  lines.push('');
  return lines.join('\n');
}
