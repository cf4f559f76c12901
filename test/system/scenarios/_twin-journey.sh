#!/bin/bash
# Helper of image-twin-boot.host.ts, run INSIDE the amd64 twin by its twin-only unit
# vigil-twin-journey.service (kernel argument vigil.journey=1) once the report unit saw the
# pairing window: journey 1 against the hub as shipped (systemd's vigil-hub.service, its
# provisioned bundle with the relay URL, LUKS). The rest of the world lives in network
# namespaces of the twin, on the twin's own node and vigil:
#   home   the home router (hostapd WPA2 + dnsmasq DHCP on hwsim radio 3) and the internet:
#          `vigil relay`, reached by the hub at the bundle's link-local URL through the router
#   phone  hwsim radio 2 (joins the hotspot) and a veth to "home" (reaches the relay)
# The phone pairs with the label's QR payload, hands over the home Wi-Fi, meets the hub at the
# relay; the PIR line (gpio-mockup) goes high, the hub records a vivid clip, the phone lists,
# downloads and decrypts it, ffprobe reads it. Every step prints `VIGIL-JOURNEY step=...`;
# the last line is `VIGIL-JOURNEY result=ok ...` or `VIGIL-JOURNEY result=fail reason=...`.
set -u
J=/run/vigil-journey
RELAY_HUB=$(cat "$J/relay-url") # the bundle's relay (link-local address in "home")
RELAY_PHONE=http://10.99.0.1:8080
PIR_LINE=$(cat "$J/pir-line")
STATUS=/run/vigil/status.json
T0=$(date +%s)
say() { echo "VIGIL-JOURNEY $*"; }
step() { say "step=$1 t=$(($(date +%s) - T0))s${2:+ $2}"; }
hub_log() { journalctl -q -u vigil-hub.service -o cat --no-pager 2>/dev/null; }
hub_tail() { hub_log | tail -n 3 | cut -c1-300 | tr '\n' ' '; }
# the diagnostics disk (raw, writable, serial vigil-diag): a tar the host unpacks into the
# scenario's work directory, written before the verdict line (the host stops qemu at it)
DIAG_DISK=/dev/disk/by-id/virtio-vigil-diag
collect() {
  local d=/run/journey-diag ns
  [ -b "$DIAG_DISK" ] || return 0
  rm -rf "$d" && mkdir -p "$d" || return 0
  journalctl -b --no-pager -o short-monotonic >"$d/journal.txt" 2>&1
  hub_log >"$d/hub.jsonl"
  {
    echo "# $(date -u +%FT%TZ) root netns"
    ip -4 addr; ip -6 addr; ip route show table all; ip neigh; iw dev; rfkill list 2>/dev/null
    for ns in home phone; do echo "# netns $ns"; ip -n $ns addr; ip -n $ns route; done
    echo "# mounts"; grep -E ' /(run|var/lib/vigil[^ ]*|boot[^ ]*) ' /proc/mounts
    echo "# processes"; ps -eo pid,ppid,etimes,args
  } >"$d/network.txt" 2>&1
  cp /tmp/relay.log /tmp/dnsmasq-home.log /tmp/home-hostapd.log /tmp/home.leases "$STATUS" \
    "$d/" 2>/dev/null
  tar -cf "$DIAG_DISK" -C "$d" . 2>/dev/null && sync && echo "  diagnostics: written to $DIAG_DISK"
}
fail() {
  # the first warnings/errors (the cause), then the latest lines (the state)
  hub_log | grep -E '"level":"(warn|error)"' | grep -v 'DEVELOPMENT KEY' | head -n 30 |
    cut -c1-600 | sed 's/^/  hub (first warnings): /'
  hub_log | grep -E '"msg":"(joined home network|relay meeting failed; retrying|met at the relay)"' |
    head -n 8 | cut -c1-500 | sed 's/^/  hub (network and relay): /'
  hub_log | tail -n 30 | cut -c1-400 | sed 's/^/  hub: /'
  { ip -4 -o addr; ip route; } 2>&1 | sed 's/^/  net: /'
  tail -n 5 /tmp/relay.log 2>/dev/null | sed 's/^/  relay: /'
  # did the home router lease the hub an address (DHCPACK), and which?
  grep -E 'DHCP(ACK|NAK|OFFER)' /tmp/dnsmasq-home.log 2>/dev/null | tail -n 6 | sed 's/^/  home dhcp: /'
  collect
  say "result=fail reason=$* (hub state $(hub_state); hub log: $(hub_tail))"
  exit 1
}
# wait_for SECONDS cmd...: poll cmd (3 s apart: the emulated CPU is the hub's too, and a
# journalctl read costs it) until it succeeds or SECONDS pass
wait_for() {
  local end=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $end ] || return 1
    sleep 3
  done
}
# wait_every INTERVAL SECONDS cmd...: as wait_for, INTERVAL s apart (for a costly cmd: a node process)
wait_every() {
  local every=$1 end=$(($(date +%s) + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $end ] || return 1
    sleep "$every"
  done
}
hub_state() { sed -n 's/^  "state": "\([a-z]*\)".*/\1/p' $STATUS 2>/dev/null; }
hub_in() { case " $* " in *" $(hub_state) "*) return 0 ;; esac; return 1; }
hub_logged() { hub_log | grep -q "$1"; }
in_ns() { ip netns exec "$@"; }
cleanup() {
  [ -n "${relaypid:-}" ] && kill "$relaypid" 2>/dev/null
  return 0
}
trap cleanup EXIT

hub_in pairing || fail "the hub is not in the pairing state"
# --- the radios: the hub's hotspot is the AP; the other two go to the phone and the home router
ap=$(iw dev | awk '/Interface/ {i=$2} /type AP/ {print i}' | head -n1)
[ -n "$ap" ] || fail "no hotspot interface in AP mode"
others=$(ls /sys/class/net | grep '^wlan' | grep -vx "$ap" | sort)
phone_if=$(echo "$others" | sed -n 1p)
home_if=$(echo "$others" | sed -n 2p)
[ -n "$home_if" ] || fail "need two more hwsim radios besides $ap (found: $others)"
for ns in home phone; do
  ip netns add $ns && in_ns $ns ip link set lo up || fail "netns $ns"
done
iw phy "$(cat /sys/class/net/$phone_if/phy80211/name)" set netns name phone || fail "radio to phone"
iw phy "$(cat /sys/class/net/$home_if/phy80211/name)" set netns name home || fail "radio to home"
step radios "hotspot=$ap phone=$phone_if home=$home_if"

# --- the home router: WPA2 AP + DHCP, and the relay ("the internet") behind it
umask 077
cat >/run/home-hostapd.conf <<C
interface=$home_if
driver=nl80211
ssid=HomeNet
hw_mode=g
channel=6
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=home wifi password
C
printf 'home wifi password\n' >/run/home-pass
umask 022
in_ns home ip addr add 192.168.77.1/24 dev "$home_if" || fail "home address"
# the relay's address for the hub: link-local (the URL rule for plain http), routed by the router
in_ns home ip addr add 169.254.77.1/32 dev lo || fail "relay address"
# a real router answers an authentication frame within mac80211's 200 ms retry window; in the
# emulated twin the router is a process beside the hub, the phone and the relay, so it gets
# real-time priority (without it the hub's three auth tries timed out under load)
in_ns home chrt -f 20 hostapd -B -P /run/home-hostapd.pid -f /tmp/home-hostapd.log /run/home-hostapd.conf ||
  fail "home router hostapd did not start"
wait_for 300 grep -q AP-ENABLED /tmp/home-hostapd.log || fail "home AP not enabled"
in_ns home dnsmasq --conf-file=/dev/null --user=root --interface="$home_if" --bind-interfaces \
  --port=0 --dhcp-range=192.168.77.50,192.168.77.60,1h --dhcp-leasefile=/tmp/home.leases \
  --pid-file=/run/home-dnsmasq.pid --log-dhcp --log-facility=/tmp/dnsmasq-home.log ||
  fail "home dnsmasq did not start"
ip link add veth-home type veth peer name veth-phone &&
  ip link set veth-home netns home && ip link set veth-phone netns phone &&
  in_ns home ip addr add 10.99.0.1/24 dev veth-home && in_ns home ip link set veth-home up &&
  in_ns phone ip addr add 10.99.0.2/24 dev veth-phone && in_ns phone ip link set veth-phone up ||
  fail "veth home<->phone"
in_ns home vigil relay --host 0.0.0.0 --port 8080 --data-dir /tmp/relay >/tmp/relay.log 2>&1 &
relaypid=$!
relay_up() { in_ns phone bash -c 'exec 3<>/dev/tcp/10.99.0.1/8080'; }
wait_for 300 relay_up || fail "relay not up: $(tail -n2 /tmp/relay.log)"
step home "HomeNet up, relay at $RELAY_HUB (hub) / $RELAY_PHONE (phone)"

# diagnostics: the moment the hub has a HomeNet address, what its network looks like
(
  wait_for 1200 sh -c "ip -4 -o addr show dev $ap | grep -q 'inet 192\.168\.77\.'" || exit 0
  { ip -4 -o addr show dev "$ap"; ip route; ip neigh; } 2>&1 | sed 's/^/  hub net: /'
  bash -c 'exec 3<>/dev/tcp/169.254.77.1/8080' 2>&1 && echo "  hub net: relay reachable" ||
    echo "  hub net: relay NOT reachable from the root netns"
  { ip route get 169.254.77.1; ip -4 route show table all | grep -v '^local\|^broadcast'; } 2>&1 |
    sed 's/^/  hub net: /'
  for f in /proc/sys/net/ipv4/conf/*/rp_filter; do printf '%s=%s ' "${f#/proc/sys/net/ipv4/conf/}" "$(cat "$f")"; done |
    sed 's/^/  hub net: rp_filter /'
  echo
  # (no node probes here: each costs ~15 s of the emulated CPU just as the hub starts its
  # services after pairing, and the hub's own log says whether it reached the relay)
) &
# --- the phone pairs with the label's QR payload, hands over HomeNet, meets the hub at the relay
payload=$(cat "$J/qr.txt")
out=$(in_ns phone vigil app pair --qr "$payload" --interface "$phone_if" --address 10.42.0.77/24 \
  --dir /tmp/phone --home-ssid HomeNet --home-password-file /run/home-pass \
  --relay "$RELAY_PHONE" --timeout 600 2>&1)
rc=$?
echo "$out" | sed 's/^/  phone: /'
[ $rc -eq 0 ] || fail "pairing failed ($rc): $(echo "$out" | tail -n1)"
echo "$out" | grep -q 'paired (MLS)' || fail "no MLS pairing"
echo "$out" | grep -q 'met the hub at the relay' || fail "did not meet the hub at the relay"
step paired

wait_for 600 hub_in running degraded || fail "hub not running after pairing"
iw dev "$ap" link | grep -q 'SSID: HomeNet' || fail "hub not associated to HomeNet"
lease=$(ip -4 -o addr show dev "$ap" | sed -n 's/.*inet \(192\.168\.77\.[0-9]*\).*/\1/p')
[ -n "$lease" ] || fail "no DHCP address on $ap"
pgrep -x hostapd | while read -r p; do
  [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ] && echo "$p"
done | grep -q . && fail "the hub's hotspot is still up"
relay_in_use=$(node -e '
const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).services?.relay ?? {};
console.log(`${s.url ?? "none"} ${s.source ?? "none"}`);' $STATUS)
[ "$relay_in_use" = "$RELAY_HUB bundle" ] || fail "hub relay in use: '$relay_in_use'"
step home-wifi "state=$(hub_state) lease=$lease relay=${relay_in_use// /,}"

# --- the PIR sensor sees someone: the hub records a clip from vivid
wait_for 600 hub_logged '"msg":"PIR sensor line open"' || fail "the hub did not open the PIR line"
wait_for 600 hub_logged '"msg":"encoder started"' || fail "the media pipeline did not start"
chip=$(basename "$(ls -d /sys/bus/platform/devices/gpio-mockup.0/gpiochip* | head -n1)")
pir=/sys/kernel/debug/gpio-mockup/$chip/$PIR_LINE
[ -e "$pir" ] || fail "no mockup line $pir"
step camera "encoder started; PIR on gpio-mockup-A line $PIR_LINE"
echo 1 >"$pir" || fail "cannot drive $pir"
pir_started() { hub_log | grep '"msg":"motion started"' | grep -q '"source":"pir"'; }
wait_for 600 pir_started || fail "no PIR motion start after the line went high"
step pir "motion started (source pir)"
echo 0 >"$pir"
wait_for 600 hub_logged '"msg":"motion ended"' || fail "no motion end after the line went low"

# --- the phone lists, downloads and decrypts the clip; ffprobe reads it
clip_seq() {
  in_ns phone vigil app list --dir /tmp/phone --json 2>/dev/null | node -e '
let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
  const e = JSON.parse(s).events.find((x) => x.size > 0);
  if (!e) process.exit(1);
  console.log(e.seq);
});' >/tmp/clip-seq
}
wait_for 600 hub_logged '"msg":"clip closed"' || fail "the hub closed no clip after the motion"
step clip "$(hub_log | grep -m1 '"msg":"clip closed"' | cut -c1-200)"
# each `vigil app list` is a node start (~15 s of the emulated CPU): spaced tries
wait_every 20 1200 clip_seq || fail "no clip listed for the phone"
seq=$(cat /tmp/clip-seq)
step listed "clip seq $seq"
got=$(in_ns phone vigil app fetch "$seq" --dir /tmp/phone -o /tmp/clip.mp4 2>&1) ||
  fail "fetch failed: $got"
echo "  phone: $got"
probe=$(ffprobe -v error -count_frames -select_streams v:0 \
  -show_entries stream=codec_name,width,height,nb_read_frames:format=duration \
  -of default=noprint_wrappers=1 /tmp/clip.mp4 2>&1) || fail "ffprobe rejects the clip: $probe"
field() { echo "$probe" | sed -n "s/^$1=//p" | head -n1; }
codec=$(field codec_name)
frames=$(field nb_read_frames)
[ "$codec" = h264 ] || fail "clip codec '$codec' ($probe)"
[ "${frames:-0}" -gt 0 ] 2>/dev/null || fail "no decodable frame in the clip ($probe)"
dur=$(field duration)
size=$(field width)x$(field height)
step decrypted "$(stat -c %s /tmp/clip.mp4) bytes"

# --- vigil doctor on the twin (docs/doctor.md): the data volume open and mounted, the relay
# the hub uses (from its bundle; the doctor learns it from the hub's status) reachable
doctor=$(vigil doctor --json --timeout 60 2>&1)
checks=$(echo "$doctor" | node -e '
let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
  for (const c of JSON.parse(s).checks)
    console.log(`${c.id} ${c.status} ${c.details.state ?? c.details.url ?? c.details.path ?? "-"}`);
});') || fail "vigil doctor --json gave no report: $(echo "$doctor" | tail -n 2)"
echo "$checks" | sed 's/^/  doctor: /'
echo "$checks" | grep -qx 'luks pass open-mounted' || fail "doctor: the data volume is not reported open and mounted"
echo "$checks" | grep -qx "relay pass $RELAY_HUB" || fail "doctor: the relay $RELAY_HUB is not reported reachable"
echo "$checks" | grep -qx 'camera pass -' || fail "doctor: no camera (vivid) reported"
echo "$checks" | grep -qx 'encoder warn software' || fail "doctor: the software encoder path is not the one reported"
echo "$checks" | grep -qx 'wifi-ap pass -' || fail "doctor: no radio with AP mode reported"
step doctor "luks=pass relay=pass camera=pass encoder=software wifi-ap=pass"
collect
say "result=ok seq=$seq codec=$codec size=$size frames=$frames duration=$dur lease=$lease t=$(($(date +%s) - T0))s"
