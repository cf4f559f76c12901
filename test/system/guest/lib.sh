# Helpers for system-test scenarios, sourced before every .sh scenario in the guest.
# Contract and examples: test/system/README.md. Names start with vt_ / VT_.

# --- reporting -------------------------------------------------------------------------

# vt_fail REASON: record the reason the host reports, print it, end the scenario.
vt_fail() {
  printf '%s\n' "$*" >"${VT_REASON_FILE:-/run/vt-reason}"
  echo "FAIL: $*"
  exit 1
}

# vt_log TEXT: a line on the console with the guest's uptime.
vt_log() {
  echo "[vt $(cut -d' ' -f1 /proc/uptime)] $*"
}

# vt_check WHAT CMD [ARGS...]: run CMD; on failure, fail with WHAT, exit code, last output line.
vt_check() {
  local what=$1 rc
  shift
  vt_log "$what: $*"
  # stream the output (a hang shows where it hangs) and keep it for the reason
  "$@" 2>&1 | tee /tmp/.vt-check.out
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    vt_fail "$what: exit code $rc: $(grep -v '^[[:space:]]*$' /tmp/.vt-check.out | tail -n1 | cut -c1-200)"
  fi
}

# vt_mark NAME: print the marker line the host's @kill-at looks for (straight to the console,
# so it is not delayed by the log pipe).
vt_mark() {
  echo "VT-MARK $1" >/dev/console
  echo "VT-MARK $1"
}

# vt_cut_here NAME: print the marker and freeze until the host pulls the plug.
vt_cut_here() {
  vt_mark "$1"
  while :; do sleep 3600; done
}

# vt_wait SECONDS CMD [ARGS...]: retry CMD every 0.1 s until it succeeds (0) or time runs out (1).
vt_wait() {
  local deadline=$(($(date +%s%N) / 1000000 + $1 * 1000))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $(($(date +%s%N) / 1000000)) -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# --- disks -----------------------------------------------------------------------------

# vt_disk NAME: the block device of a scenario disk ("scratch" always exists).
vt_disk() {
  local d=/dev/vt/$1
  [ -b "$d" ] || vt_fail "no disk named '$1' (declare it with '# @disk $1 SIZE')"
  readlink -f "$d"
}

vt_dmcrypt() {
  modprobe dm_crypt || vt_fail "modprobe dm_crypt failed"
}

# --- network namespaces ------------------------------------------------------------------

# vt_netns NAME: create network namespace NAME with lo up (no-op if it exists; "root" is the
# root namespace).
vt_netns() {
  [ "$1" = root ] && return 0
  [ -e "/run/netns/$1" ] || ip netns add "$1" || vt_fail "ip netns add $1 failed"
  ip -n "$1" link set lo up
}

# vt_in NAME CMD [ARGS...]: run CMD inside namespace NAME ("root" runs it directly).
vt_in() {
  local ns=$1
  shift
  if [ "$ns" = root ]; then "$@"; else ip netns exec "$ns" "$@"; fi
}

# vt_veth NS_A ADDR_A NS_B ADDR_B: a veth pair between two namespaces, addresses with prefix
# (e.g. 10.9.0.1/24). Interfaces are named veth-<other ns> on each side (max 15 chars).
vt_veth() {
  local a=$1 aa=$2 b=$3 ba=$4 ia ib
  ia=$(printf 'v-%s' "$b" | cut -c1-15)
  ib=$(printf 'v-%s' "$a" | cut -c1-15)
  vt_netns "$a"
  vt_netns "$b"
  ip link add "$ia" type veth peer name "$ib" || vt_fail "veth $a<->$b failed"
  [ "$a" = root ] || ip link set "$ia" netns "$a"
  [ "$b" = root ] || ip link set "$ib" netns "$b"
  vt_in "$a" ip addr add "$aa" dev "$ia"
  vt_in "$b" ip addr add "$ba" dev "$ib"
  vt_in "$a" ip link set "$ia" up
  vt_in "$b" ip link set "$ib" up
}

# --- Wi-Fi (mac80211_hwsim) ----------------------------------------------------------------

# vt_hwsim NS0 NS1 ...: one simulated radio per argument. Radio i is the interface wlan<i>,
# moved with its phy into namespace NS<i> ("root" = stays in the root namespace).
# Sets VT_WLAN_PHY[i]. Reloads mac80211_hwsim, so previous radios disappear.
vt_hwsim() {
  local n=$# i=0 ns phy
  [ "$n" -gt 0 ] || vt_fail "vt_hwsim: name at least one namespace"
  rmmod mac80211_hwsim 2>/dev/null
  modprobe mac80211_hwsim radios="$n" || vt_fail "modprobe mac80211_hwsim failed"
  vt_wait 10 test -e "/sys/class/net/wlan$((n - 1))" || vt_fail "hwsim: wlan$((n - 1)) did not appear"
  VT_WLAN_PHY=()
  for ns in "$@"; do
    phy=$(cat "/sys/class/net/wlan$i/phy80211/name") || vt_fail "hwsim: no phy for wlan$i"
    VT_WLAN_PHY[i]=$phy
    if [ "$ns" != root ]; then
      vt_netns "$ns"
      iw phy "$phy" set netns name "$ns" || vt_fail "hwsim: moving $phy to netns $ns failed"
    fi
    i=$((i + 1))
  done
}

# --- video: vivid (capture) and vicodec (M2M codec) -------------------------------------------

# vt_video_by NAME_SUBSTRING [list-formats option] [FOURCC]: first /dev/videoN whose driver card
# name contains NAME_SUBSTRING (and, if given, lists FOURCC with that v4l2-ctl option).
vt_video_by() {
  local want=$1 opt=${2:-} fourcc=${3:-} d n
  for d in /sys/class/video4linux/video*; do
    [ -e "$d" ] || continue
    n=/dev/${d##*/}
    v4l2-ctl -d "$n" --info 2>/dev/null | grep -q -- "$want" || continue
    if [ -n "$opt" ]; then v4l2-ctl -d "$n" "$opt" 2>/dev/null | grep -q "'$fourcc'" || continue; fi
    echo "$n"
    return 0
  done
  return 1
}

# vt_vivid: load vivid with one capture node; VT_VIVID_DEV=/dev/videoN.
vt_vivid() {
  lsmod | grep -q '^vivid ' || modprobe vivid n_devs=1 node_types=0x1 || vt_fail "modprobe vivid failed"
  vt_wait 10 vt_video_by vivid || vt_fail "vivid: no capture node appeared"
  VT_VIVID_DEV=$(vt_video_by vivid)
  export VT_VIVID_DEV
}

# vt_vicodec: load vicodec; VT_VICODEC_ENC (raw in, FWHT out) and VT_VICODEC_DEC (FWHT in).
vt_vicodec() {
  lsmod | grep -q '^vicodec ' || modprobe vicodec || vt_fail "modprobe vicodec failed"
  vt_wait 10 vt_video_by vicodec --list-formats FWHT || vt_fail "vicodec: no encoder node appeared"
  VT_VICODEC_ENC=$(vt_video_by vicodec --list-formats FWHT)
  VT_VICODEC_DEC=$(vt_video_by vicodec --list-formats-out FWHT)
  export VT_VICODEC_ENC VT_VICODEC_DEC
}

# --- GPIO (gpio-mockup) ----------------------------------------------------------------------

# vt_gpio_mockup [NLINES]: one mockup chip with NLINES (default 32) named lines
# ("gpio-mockup-A-<offset>"); the kernel picks the base. Sets VT_GPIO_LABEL, VT_GPIO_BASE,
# VT_GPIO_NGPIO, VT_GPIO_CHIPDEV (/dev/gpiochipN), VT_GPIO_DEBUGFS.
vt_gpio_mockup() {
  local n=${1:-32} c chip
  lsmod | grep -q '^gpio_mockup ' ||
    modprobe gpio-mockup gpio_mockup_ranges=-1,"$n" gpio_mockup_named_lines=1 ||
    vt_fail "modprobe gpio-mockup failed"
  vt_wait 10 test -d /sys/bus/platform/devices/gpio-mockup.0 || vt_fail "gpio-mockup: no device"
  for c in /sys/class/gpio/gpiochip*; do
    [ "$(cat "$c/label" 2>/dev/null)" = gpio-mockup-A ] || continue
    VT_GPIO_LABEL=gpio-mockup-A
    VT_GPIO_BASE=$(cat "$c/base")
    VT_GPIO_NGPIO=$(cat "$c/ngpio")
  done
  [ -n "${VT_GPIO_BASE:-}" ] || vt_fail "gpio-mockup: no sysfs chip labelled gpio-mockup-A"
  chip=$(basename "$(ls -d /sys/bus/platform/devices/gpio-mockup.0/gpiochip* | head -1)")
  VT_GPIO_CHIPDEV=/dev/$chip
  VT_GPIO_DEBUGFS=/sys/kernel/debug/gpio-mockup/$chip
  export VT_GPIO_LABEL VT_GPIO_BASE VT_GPIO_NGPIO VT_GPIO_CHIPDEV VT_GPIO_DEBUGFS
}

# vt_gpio_drive OFFSET 0|1: set the level the outside world puts on an input line.
vt_gpio_drive() {
  echo "$2" >"$VT_GPIO_DEBUGFS/$1" || vt_fail "gpio-mockup: cannot drive line $1"
}

# vt_gpio_read OFFSET: the line's current value (for an output: what the consumer drives).
vt_gpio_read() {
  cat "$VT_GPIO_DEBUGFS/$1"
}
