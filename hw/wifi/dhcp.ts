/**
 * The DHCP client for the home network: busybox `udhcpc` with an event script
 * of our own. Debian's busybox package ships udhcpc without the default script
 * (/usr/share/udhcpc/default.script comes with the separate `udhcpc` package),
 * and without a script udhcpc gets a lease but configures nothing.
 *
 * The script (POSIX sh, run by udhcpc with `interface`, `ip`, `mask`, `router`,
 * `dns` in its environment) sets the address, the default route and
 * resolv.conf, and prints `BOUND <ip>`.
 *
 * udhcpc execs the script itself (there is no interpreter option), so it must live on a
 * filesystem mounted with exec: not /run, which Debian's initramfs-tools mounts
 * `nodev,noexec,nosuid` before systemd starts (every image boots through it). From /run the
 * exec fails with EACCES, udhcpc still reports the lease and exits 0, and the hub is
 * "joined" with no address and no route. The hub's state directory (root filesystem) is used.
 */
import { chmod } from 'node:fs/promises';
import type { DurableFs } from '../os/fs.js';
import type { HostPaths } from '../os/host-paths.js';

export const UDHCPC_SCRIPT_PATH = '/var/lib/vigil/udhcpc.sh';

export function udhcpcScript(resolvConf: string): string {
  const q = `'${resolvConf.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh
# udhcpc event script written by Vigil (hw/wifi/dhcp.ts)
RESOLV=${q}
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface" || exit 1
    if [ -n "$router" ]; then
      for _ in 1 2 3 4; do ip route del default dev "$interface" 2>/dev/null || break; done
      for r in $router; do
        ip route add default via "$r" dev "$interface"
        break
      done
    fi
    if [ -n "$dns" ]; then
      tmp="$RESOLV.vigil.$$"
      : >"$tmp" || exit 0
      [ -n "$domain" ] && echo "search $domain" >>"$tmp"
      for d in $dns; do echo "nameserver $d" >>"$tmp"; done
      mv -f "$tmp" "$RESOLV"
    fi
    echo "BOUND $ip"
    ;;
esac
exit 0
`;
}

/** Write the event script (mode 0700) and return the udhcpc argv that uses it. */
export async function udhcpcCommand(
  fs: DurableFs,
  paths: HostPaths,
  iface: string,
): Promise<string[]> {
  const script = paths.host(UDHCPC_SCRIPT_PATH);
  await fs.writeFileAtomic(script, udhcpcScript(paths.host('/etc/resolv.conf')), 'udhcpc-script');
  await chmod(script, 0o700);
  // -n: exit if no lease; -q: exit once bound; 10 discover tries, 3 s apart
  return ['busybox', 'udhcpc', '-i', iface, '-n', '-q', '-t', '10', '-T', '3', '-s', script];
}
