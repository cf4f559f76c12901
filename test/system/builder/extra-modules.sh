#!/bin/bash
# Build, out of tree, the test drivers Debian's amd64 6.1 kernel does not ship, from Debian's
# own kernel source of the SAME version as the guest kernel:
#   v4l2-mem2mem.ko  (CONFIG_V4L2_MEM2MEM_DEV is off on amd64; vicodec and vim2m need it)
#   vicodec.ko       (virtual FWHT stateful encoder/decoder: an M2M codec)
#   vim2m.ko         (virtual M2M scaler)
#   gpio-mockup.ko   (irq_sim linked in: upstream it is built-in only; it calls the exported
#                     generic_handle_irq() instead of the unexported handle_simple_irq())
# The modules are unsigned; the kernel has MODULE_SIG but not MODULE_SIG_FORCE, so they load.
#
#   extra-modules.sh KERNEL_RELEASE LINUX_SOURCE_DEB OUT_DIR
set -euo pipefail
KV=$1 SRC_DEB=$2 OUT=$3
HDR=/usr/src/linux-headers-$KV
[ -d "$HDR" ] || { echo "extra-modules: $HDR missing (apt-get install linux-headers-$KV)" >&2; exit 1; }
V=$(echo "$KV" | cut -d. -f1-2)
W=$(mktemp -d "${TMPDIR:-/tmp}/vigil-ko.XXXXXX")
trap 'rm -rf "$W"' EXIT

S=linux-source-$V
dpkg-deb --fsys-tarfile "$SRC_DEB" | tar -xO "./usr/src/$S.tar.xz" | xz -dc -T0 | tar -C "$W" -x \
  "$S/drivers/media/test-drivers/vicodec" "$S/drivers/media/test-drivers/vim2m.c" \
  "$S/drivers/media/v4l2-core/v4l2-mem2mem.c" "$S/drivers/gpio/gpio-mockup.c" \
  "$S/drivers/gpio/gpiolib.h" "$S/kernel/irq/irq_sim.c"

M=$W/media G=$W/gpio
mkdir -p "$M" "$G" "$OUT"
cp "$W/$S"/drivers/media/test-drivers/vicodec/*.[ch] "$W/$S/drivers/media/test-drivers/vim2m.c" \
  "$W/$S/drivers/media/v4l2-core/v4l2-mem2mem.c" "$M/"
cat >"$M/Kbuild" <<'EOF'
obj-m += v4l2-mem2mem.o vicodec.o vim2m.o
vicodec-objs := vicodec-core.o codec-fwht.o codec-v4l2-fwht.o
EOF
cp "$W/$S/drivers/gpio/gpio-mockup.c" "$G/gpio-mockup-main.c"
cp "$W/$S/drivers/gpio/gpiolib.h" "$W/$S/kernel/irq/irq_sim.c" "$G/"
grep -q 'handle_simple_irq(irq_to_desc(irqnum));' "$G/irq_sim.c" ||
  { echo "extra-modules: irq_sim.c changed upstream; patch point not found" >&2; exit 1; }
sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$G/irq_sim.c"
cat >"$G/Kbuild" <<'EOF'
obj-m += gpio-mockup.o
gpio-mockup-objs := gpio-mockup-main.o irq_sim.o
EOF
for d in "$M" "$G"; do make -s -j"$(nproc)" -C "$HDR" M="$d" modules; done
cp "$M"/*.ko "$G"/*.ko "$OUT/"
ls "$OUT"
