#!/bin/bash
# Twin side of ota-os-ab-twin.host.ts, one boot: run by the image's twin journey unit (vigil.journey=1)
# once systemd has started the shipped units; its lines reach the console (journal+console).
# The host played the Pi firmware (test/system/lib/pi-firmware.ts) and serves the TUF
# repository at the address in repo-url over qemu's user network. Everything else is the
# booted slot's own: systemd (PID 1, petting the i6300esb watchdog), the hub unit, RAUC's
# service and system.conf, the backend, `vigil ota os-confirm` / `os-check`.
set -uo pipefail
here=$(dirname "$0")
say() { echo "VIGIL-OSAB $*"; }
fail() {
  say "result=fail reason=$*"
  exit 1
}

version=$(cat /etc/vigil/os-version)
tryboot=$(sed -n 's/.*vigil\.tryboot=\([01]\).*/\1/p' /proc/cmdline)
part=$(sed -n 's/.*vigil\.boot_partition=\([0-9]*\).*/\1/p' /proc/cmdline)
slot=$(sed -n 's/.*rauc\.slot=\([AB]\).*/\1/p' /proc/cmdline)
# PID 1 holds the watchdog device open once it armed it (RuntimeWatchdogSec)
wd=$(ls -l /proc/1/fd | grep -o '/dev/watchdog[0-9]*' | head -n 1)
say "boot slot=$slot partition=$part tryboot=$tryboot version=$version watchdog=${wd:-none}"

# RAUC's progress on the console: the host cuts the power at "writing data to device"
journalctl -f -n 0 -o cat -u rauc.service | sed -u 's/^/VIGIL-RAUC /' &

# The agent's TUF metadata: per slot on its root, as on a card
state=/var/lib/vigil/osab-$slot
mkdir -p "$state"

# The hub's verdict for the health check (`systemctl is-active vigil-hub.service`): wait until
# the unit is active, or failed, or restarting after a failure.
for _ in $(seq 1 600); do
  s=$(systemctl show -p ActiveState --value vigil-hub.service)
  r=$(systemctl show -p NRestarts --value vigil-hub.service)
  [ "$s" = active ] || [ "$s" = failed ] || [ "${r:-0}" -gt 0 ] && break
  sleep 1
done
say "hub state=$s restarts=$r"

if [ -f /boot/firmware/vigil-os.json ]; then
  # a pending trial: settled by the product's confirm (mark-good, or mark-bad + reboot)
  say "confirm start"
  vigil ota os-confirm --state "$state" --root "$here/root.json" | sed -u 's/^/VIGIL-OSAB outcome /'
  confirmed=$?
  say "confirm done"
  # a failed trial: os-confirm asked for the plain reboot into the committed slot (on a plain
  # boot a rollback is only reported: the check follows)
  [ "$confirmed" -eq 0 ] || [ "$tryboot" != 1 ] || { say "result=rolled-back"; exit 0; }
fi

# the network to the host's repository (qemu user networking: 10.0.2.15, host 10.0.2.2)
dev=
for d in /sys/class/net/*; do
  [ "$(basename "$(readlink -f "$d/device/driver" 2>/dev/null)")" = virtio_net ] && dev=$(basename "$d")
done
[ -n "$dev" ] || fail "no virtio network device"
ip link set "$dev" up && ip addr add 10.0.2.15/24 dev "$dev" || fail "cannot configure $dev"
# The agent downloads the bundle to the data volume: the hub unlocks and mounts it (in the hub
# unit's own mount namespace, where os-check finds it: ota/os-cli.ts). The first boot formats
# it first (LUKS under TCG: minutes).
# (the hub's state on the console every minute meanwhile; its journal's tail if it never does)
hub_state() { sed -n 's/^  "summary": "\(.*\)",$/\1/p' /run/vigil/status.json 2>/dev/null | head -n 1; }
for i in $(seq 1 900); do
  grep -qs ' /dev/mapper/vigil-data ' /proc/[0-9]*/mountinfo && break
  [ $((i % 60)) -eq 0 ] && say "waiting for the data volume (${i} s): hub $(hub_state)"
  sleep 1
done
if ! grep -qs ' /dev/mapper/vigil-data ' /proc/[0-9]*/mountinfo; then
  journalctl -q -u vigil-hub.service -o cat --no-pager -n 40 | cut -c1-400 | sed 's/^/VIGIL-OSAB hub-log /'
  fail "the hub never mounted the data volume (hub: $(hub_state))"
fi
say "data volume mounted (waited ${i} s)"
# boot 1 starts while the host still bundles v2: wait until the host says it is released
url=$(cat "$here/repo-url")
port=${url##*:}
released() {
  exec 3<>"/dev/tcp/10.0.2.2/$port" || return 1
  printf 'GET /osab-ready HTTP/1.0\r\n\r\n' >&3
  local status
  read -r status <&3
  exec 3<&-
  [[ $status == *" 200 "* ]]
}
for i in $(seq 1 900); do
  released && break
  sleep 1
done
released || fail "the host released nothing"
say "release ready (waited ${i} s)"
say "check start"
vigil ota os-check --state "$state" --root "$here/root.json" --url "$url" |
  sed -u 's/^/VIGIL-OSAB check /'
say "result=done"
