#!/bin/bash
# Build the system-test guest into OUT_DIR (a fresh directory; the caller moves it into the
# cache only when this script succeeds):
#   OUT/vmlinuz            Debian's stock amd64 kernel
#   OUT/rootfs.img         ext4 root: Debian bookworm (mmdebstrap) + kernel modules (+ the
#                          out-of-tree test drivers) + the host's node binary
#   OUT/initrd-base.cpio   busybox + the modules needed to mount the root disk (the per-boot
#                          /init and plan are appended as a second cpio by the runner)
#   OUT/kernel-release     e.g. 6.1.0-56-amd64
#   OUT/manifest.txt       what went in (versions, sizes)
# Nothing is mounted and no loop device is used (mkfs.ext4 -d).
#
#   build-guest.sh OUT_DIR DEB_CACHE_DIR
# Env: VIGIL_KERNEL_PKG (linux-image-6.1.0-NN-amd64), VIGIL_KERNEL_VERSION (Debian version),
#      VIGIL_GUEST_PACKAGES (comma-separated), VIGIL_NODE (node binary to copy).
set -euo pipefail
OUT=$1 DEBS=$2
HERE=$(cd "$(dirname "$0")" && pwd)
: "${VIGIL_KERNEL_PKG:?}" "${VIGIL_KERNEL_VERSION:?}" "${VIGIL_GUEST_PACKAGES:?}" "${VIGIL_NODE:?}"
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
export SOURCE_DATE_EPOCH=1700000000
log() { echo "[guest-build $(date +%T)] $*" >&2; }

mkdir -p "$OUT" "$DEBS"
W=$(mktemp -d "${TMPDIR:-/tmp}/vigil-guest.XXXXXX")
trap 'rm -rf "$W"' EXIT

# 1. Debian packages (kept in DEB_CACHE_DIR across rebuilds)
fetch() { # PKG VERSION
  local f
  f=$(ls "$DEBS/$1"_*.deb 2>/dev/null | grep -F "_$(echo "$2" | sed 's/:/%3a/')_" | head -1 || true)
  if [ -z "$f" ]; then
    (cd "$DEBS" && apt-get download -q "$1=$2" 2>&1 | grep -v -e unsandboxed -e '^Get:' >&2 || true)
    f=$(ls "$DEBS/$1"_*.deb 2>/dev/null | grep -F "_$(echo "$2" | sed 's/:/%3a/')_" | head -1 || true)
  fi
  [ -n "$f" ] || { log "could not download $1=$2 (apt-get update?)"; exit 1; }
  echo "$f"
}
KDEB=$(fetch "$VIGIL_KERNEL_PKG" "$VIGIL_KERNEL_VERSION")
V=$(echo "$VIGIL_KERNEL_PKG" | sed -E 's/^linux-image-([0-9]+\.[0-9]+)\..*/\1/')
SDEB=$(fetch "linux-source-$V" "$VIGIL_KERNEL_VERSION")
log "kernel $KDEB"
dpkg-deb -x "$KDEB" "$W/kx"
KV=$(ls "$W/kx/lib/modules" | head -1)
cp "$W/kx/boot/vmlinuz-$KV" "$OUT/vmlinuz"
echo "$KV" >"$OUT/kernel-release"

# 2. out-of-tree test drivers (in parallel with the root filesystem below)
if [ ! -d "/usr/src/linux-headers-$KV" ]; then
  log "installing linux-headers-$KV"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "linux-headers-$KV" >&2
fi
log "building vicodec, v4l2-mem2mem, vim2m, gpio-mockup"
"$HERE/extra-modules.sh" "$KV" "$SDEB" "$W/extra-ko" >"$W/extra-ko.log" 2>&1 &
KO_PID=$!

# 3. root filesystem
R=$W/root
log "mmdebstrap $SUITE: $VIGIL_GUEST_PACKAGES"
mmdebstrap --quiet --variant=essential --include="$VIGIL_GUEST_PACKAGES" \
  --aptopt='Apt::Install-Recommends "false"' \
  --dpkgopt=force-unsafe-io --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  "$SUITE" "$R" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
  "deb http://deb.debian.org/debian-security $SUITE-security main"

if ! wait "$KO_PID"; then
  cat "$W/extra-ko.log" >&2
  log "extra module build failed"
  exit 1
fi

# kernel modules, minus trees a test VM never needs
mkdir -p "$R/lib/modules"
tar -C "$W/kx/lib/modules" \
  --exclude='*/kernel/drivers/gpu' --exclude='*/kernel/sound' \
  --exclude='*/kernel/drivers/infiniband' --exclude='*/kernel/drivers/net/ethernet' \
  --exclude='*/kernel/drivers/scsi' --exclude='*/kernel/drivers/staging' \
  --exclude='*/kernel/drivers/net/wireless/[a-z]*/' --exclude='*/kernel/drivers/iio' \
  --exclude='*/kernel/drivers/isdn' --exclude='*/kernel/drivers/media/usb' \
  --exclude='*/kernel/drivers/media/dvb-frontends' --exclude='*/kernel/drivers/media/tuners' \
  --exclude='*/kernel/drivers/media/pci' --exclude='*/kernel/drivers/bluetooth' \
  --exclude='*/kernel/drivers/hid' --exclude='*/kernel/drivers/usb' \
  -cf - "$KV" | tar -C "$R/lib/modules" -xf -
# of sound/, only the ALSA core and snd-aloop (a loopback card: the audio scenario's microphone)
(cd "$W/kx/lib/modules" && tar -cf - "$KV"/kernel/sound/soundcore.ko* "$KV"/kernel/sound/core \
  "$KV"/kernel/sound/drivers/snd-aloop.ko*) | tar -C "$R/lib/modules" -xf -
mkdir -p "$R/lib/modules/$KV/extra"
cp "$W"/extra-ko/*.ko "$R/lib/modules/$KV/extra/"
depmod -b "$R" "$KV"

# node 20 from the host (Debian bookworm's nodejs is 18)
install -m 0755 "$VIGIL_NODE" "$R/usr/local/bin/node"
mkdir -p "$R/vigil" "$R/dev/vt"
echo vigil-test >"$R/etc/hostname"

size=$(($(du -sm "$R" | cut -f1) * 12 / 10 + 384))
log "mkfs.ext4 rootfs.img (${size} MiB)"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L vigil-root -d "$R" "$OUT/rootfs.img" "${size}M"

# 4. initramfs base: busybox + what mounting an ext4 virtio disk needs
B=$W/initramfs
mkdir -p "$B"/{bin,proc,sys,dev,newroot,mods}
cp /bin/busybox "$B/bin/busybox"
: >"$B/mods/order"
for m in virtio_pci virtio_blk ext4; do
  modprobe -d "$R" -S "$KV" --show-depends "$m" | awk '$1=="insmod"{print $2}' | while read -r ko; do
    b=$(basename "$ko")
    grep -qx "$b" "$B/mods/order" || { cp "$ko" "$B/mods/$b"; echo "$b" >>"$B/mods/order"; }
  done
done
(cd "$B" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible) >"$OUT/initrd-base.cpio"

{
  echo "kernel $VIGIL_KERNEL_PKG $VIGIL_KERNEL_VERSION ($KV)"
  echo "node $("$VIGIL_NODE" --version)"
  echo "extra modules: $(cd "$W/extra-ko" && ls | tr '\n' ' ')"
  echo "initramfs modules: $(tr '\n' ' ' <"$B/mods/order")"
  echo "rootfs $(du -sm "$R" | cut -f1) MiB used, image ${size} MiB"
  echo "packages: $VIGIL_GUEST_PACKAGES"
} >"$OUT/manifest.txt"
log "done: $(tr '\n' ';' <"$OUT/manifest.txt")"
