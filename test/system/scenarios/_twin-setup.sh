#!/bin/bash
# Helper of image-twin-boot.host.ts, run INSIDE the amd64 twin by its twin-only unit
# vigil-twin-setup.service (kernel argument vigil.journey=1), before the hub starts: the test
# board's extra hardware and its hub config, from the journey disk unpacked in $J.
#   gpio-mockup.ko   the PIR sensor's GPIO chip (Debian's kernel does not ship gpio-mockup;
#                    the system-test guest's out-of-tree build for the same kernel release)
#   config.json      the hub config of this test board (camera size for TCG, PIR line)
# The hub then starts as shipped (vigil-hub.service, first boot, LUKS).
set -u
J=/run/vigil-journey
say() { echo "VIGIL-JOURNEY $*"; }
abort() {
  say "result=fail reason=setup: $*"
  exit 1
}
kmod=$(modinfo -F vermagic "$J/gpio-mockup.ko" 2>/dev/null | cut -d' ' -f1)
[ "$kmod" = "$(uname -r)" ] || abort "gpio-mockup.ko is for kernel '$kmod', the twin runs $(uname -r)"
insmod "$J/gpio-mockup.ko" gpio_mockup_ranges=-1,8 gpio_mockup_named_lines=1 ||
  abort "insmod gpio-mockup failed"
install -m 0600 "$J/config.json" /etc/vigil/config.json || abort "cannot install the hub config"
say "setup gpio-mockup=loaded config=installed"
