#!/bin/bash
# Pairing across three mac80211_hwsim radios: the hub's pairing hotspot (HostapdHotspot +
# dnsmasq, on wlan0), a "phone" in netns phone (wlan1) running `vigil app pair`, a "home
# router" AP in netns home (wlan2). A label with the wrong secret cannot even associate
# (WPA2); the right label pairs over MLS, sends the home Wi-Fi over the config group, and
# the hub leaves AP mode and joins the home network.
# @timeout 600
set -u
VIGIL="node /vigil/dist/bin/vigil.js"
HUB=/tmp/hub
mkdir -p $HUB
cleanup() {
  cp /tmp/hub.log /tmp/factory.log /tmp/home-hostapd.log "$VT_OUT/" 2>/dev/null
  [ -n "${hubpid:-}" ] && kill "$hubpid" 2>/dev/null
  [ -s /run/home-hostapd.pid ] && kill "$(cat /run/home-hostapd.pid)" 2>/dev/null
  return 0
}
trap cleanup EXIT

vt_hwsim root phone home

# --- the home router: WPA2 AP in netns "home", static address ---
umask 077
cat >/run/home-hostapd.conf <<C
interface=wlan2
driver=nl80211
ssid=HomeNet
hw_mode=g
# no country_code: a regulatory update requested from inside a netns can leave hostapd in
# COUNTRY_UPDATE; the home router is scenery, the hub (root netns) sets its country itself
channel=6
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=home wifi password
C
printf 'home wifi password\n' >/run/home-pass
printf 'not the password\n' >/run/home-wrong-pass
umask 022
vt_in home ip addr add 192.168.77.1/24 dev wlan2
vt_in home hostapd -B -P /run/home-hostapd.pid -f /tmp/home-hostapd.log /run/home-hostapd.conf ||
  vt_fail "home router hostapd did not start"
vt_wait 20 grep -q AP-ENABLED /tmp/home-hostapd.log || vt_fail "home AP not enabled"

# --- factory: one device; its bundle is what the image step would install ---
$VIGIL factory provision --count 1 --out /tmp/batch --no-progress >/tmp/factory.log || vt_fail "factory provision failed"
bundle=$(ls -d /tmp/batch/bundles/*)

# --- the hub ---
HUB_DIR=$HUB HUB_BUNDLE=$bundle node /vigil/dist/test/system/scenarios/_pairing-hub.js 2>/tmp/hub.log &
hubpid=$!
vt_wait 240 test -e $HUB/ready || vt_fail "hub did not open its pairing hotspot: $(tail -n3 /tmp/hub.log)"
ssid=$(iw dev wlan0 info | sed -n 's/^\s*ssid //p')
case $ssid in Vigil-??????) ;; *) vt_fail "hotspot SSID '$ssid' is not Vigil-<short id>" ;; esac
pgrep -f 'vigil/hotspot/hostapd.conf' >/dev/null || vt_fail "no hub hostapd"
vt_log "hub hotspot $ssid up"

# --- wrong label (same device id, another secret): WPA2 refuses the phone ---
payload=$(cat $HUB/qr-payload)
wrong=$(node --input-type=module -e '
const { encodeQrPayload, decodeQrPayload } = await import("/vigil/dist/protocol/qr-payload.js");
const id = decodeQrPayload(process.argv[1]);
const s = new Uint8Array(id.secret); s[0] ^= 1;
console.log(encodeQrPayload({ deviceId: id.deviceId, secret: s }));' "$payload")
out=$(vt_in phone $VIGIL app pair --qr "$wrong" --interface wlan1 --address 10.42.0.77/24 --dir /tmp/phone-wrong --timeout 25 2>&1)
rc=$?
[ $rc -ne 0 ] || vt_fail "a wrong label paired: $out"
echo "$out" | grep -q "rejected the passphrase" || vt_fail "wrong label: unexpected error: $out"
[ ! -e /tmp/phone-wrong/e2ee/phone.json ] || vt_fail "wrong label left phone state"
vt_log "wrong label refused at WPA2: $(echo "$out" | tail -n1)"

# --- the right label: join the hotspot, pair (MLS), send the home Wi-Fi ---
out=$(vt_in phone $VIGIL app pair --qr "$payload" --interface wlan1 --address 10.42.0.77/24 \
  --dir /tmp/phone --home-ssid HomeNet --home-password-file /run/home-pass --timeout 120 2>&1) ||
  vt_fail "pairing failed: $(echo "$out" | tail -n2) | hub: $(tail -n2 /tmp/hub.log)"
echo "$out"
echo "$out" | grep -q 'paired (MLS)' || vt_fail "no MLS pairing: $out"
vt_wait 60 test -e $HUB/handoff.json || vt_fail "no handoff outcome: $(tail -n3 /tmp/hub.log)"
cat $HUB/handoff.json
grep -q '"ok":true' $HUB/handoff.json || vt_fail "handoff failed: $(cat $HUB/handoff.json)"

# --- after pairing: hotspot gone, hub associated to the home network ---
iw dev wlan0 link | grep -q 'SSID: HomeNet' || vt_fail "hub not associated to HomeNet: $(iw dev wlan0 link)"
iw dev wlan0 info | grep -q 'type managed' || vt_fail "wlan0 is still an AP"
! pgrep -f 'vigil/hotspot/hostapd.conf' >/dev/null || vt_fail "hub hostapd still running"
vt_wait 15 ping -c1 -W2 192.168.77.1 >/dev/null || vt_fail "hub cannot reach the home router"
[ "$(cat $HUB/relay-token)" = "$(cat /tmp/phone/pairing-token)" ] || vt_fail "relay tokens differ"
vt_log "hub left AP mode and joined HomeNet; relay token shared"
