#!/bin/bash
# Guest side of ota-os-ab.host.ts, one boot: the card is the scenario's disk "card" (real MBR
# layout of protocol/card-layout.ts), the TUF repository and the image's files a tar on "in". The host
# played the Pi firmware (test/system/lib/pi-firmware.ts): it booted the kernel of the boot
# partition autoboot.txt + tryboot.flag chose, with that partition's cmdline.txt (root=,
# rauc.slot=) plus vigil.boot_partition=N vigil.tryboot=0|1.
#
# What the harness cannot do is mount the chosen root slot as / (its own Debian root carries
# node, rauc and the tools): the booted slot's /etc/vigil/os-version and its test behaviour
# (healthy | unhealthy | hang) are copied from the root partition the command line names.
set -euo pipefail

for m in loop dm_mod dm_verity squashfs vfat i6300esb; do
  modprobe "$m" || vt_fail "modprobe $m"
done

# The host's disk "in": the TUF repository and the image's OS update files (RAUC's
# system.conf, the backend's wrapper, the watchdog drop-in, /usr/bin/vigil), written on the host
# by the project's own code (image/overlay.ts).
mkdir -p /tmp/in
tar -xf /dev/vt/in -C /tmp/in
cp -a /tmp/in/files/. /
# the image's wrappers run /opt/vigil's node and dist: here the guest's node and /vigil/dist
mkdir -p /opt/vigil/node/bin
ln -sfn /usr/local/bin/node /opt/vigil/node/bin/node
ln -sfn /vigil/dist /opt/vigil/dist

# The hardware watchdog, as systemd arms it at PID 1's start (RuntimeWatchdogSec from the
# image's drop-in; systemd pets at half the period): qemu's i6300esb in place of the Pi's
# bcm2835-wdt, busybox's petter in place of PID 1's main loop.
wd=$(sed -n 's/^RuntimeWatchdogSec=\([0-9]*\)s$/\1/p' /etc/systemd/system.conf.d/vigil-watchdog.conf)
[ -n "$wd" ] || vt_fail "no RuntimeWatchdogSec=<n>s in the image's watchdog drop-in"
[ -c /dev/watchdog0 ] || vt_fail "no /dev/watchdog0 (i6300esb)"
busybox watchdog -F -t $((wd / 2)) -T "$wd" /dev/watchdog0 &
petter=$!

card=$(readlink -f /dev/vt/card)
# the names RAUC's system.conf uses (the image has udev; the harness's guest has none)
mkdir -p /dev/disk/by-partuuid
for n in 1 2 5 6; do
  [ -b "${card}$n" ] || vt_fail "the card has no partition $n (${card}$n)"
  ln -sfn "${card}$n" "/dev/disk/by-partuuid/5649474c-0$n"
done
mkdir -p /boot/firmware
mount -t vfat -o sync "${card}1" /boot/firmware

root=$(sed -n 's/.*root=PARTUUID=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$root" ] || vt_fail "no root=PARTUUID= on the kernel command line: $(cat /proc/cmdline)"
mkdir -p /mnt/slot /etc/vigil
mount -o ro "/dev/disk/by-partuuid/$root" /mnt/slot
cp /mnt/slot/etc/vigil/os-version /etc/vigil/os-version
behaviour=$(cat /mnt/slot/etc/vigil/test-behaviour 2>/dev/null || echo healthy)
umount /mnt/slot
echo "VT-OS-ROOT partuuid=$root version=$(cat /etc/vigil/os-version) behaviour=$behaviour watchdog=${wd}s"

if [ "$behaviour" = hang ]; then
  # A new OS that hangs at boot: PID 1 (or the kernel) stops, so nobody pets the watchdog
  # any more. Frozen, not killed: the device stays open, as it does in a hung PID 1.
  kill -STOP "$petter"
  echo "VT-OS-HANG"
  sleep infinity
fi

mkdir -p /run/dbus
cat >/tmp/bus.conf <<'EOF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file=/tmp/bus.conf --fork

cp /tmp/in/repo/keyring.pem /etc/rauc/keyring.pem

rauc service >/run/rauc-service.log 2>&1 &
gdbus wait --system --timeout 120 de.pengutronix.rauc || {
  cat /run/rauc-service.log
  vt_fail "rauc service did not come up"
}
echo "VT-OS-RAUC up"
# RAUC's progress on the console: the host cuts the power on "writing data to device"
tail -n +1 -f /run/rauc-service.log &

VT_OS_BEHAVIOUR=$behaviour node /vigil/dist/test/system/scenarios/_ota-os-ab.js device
