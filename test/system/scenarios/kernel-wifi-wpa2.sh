#!/bin/bash
# Issue 4b: a WPA2-PSK access point (hostapd) on one mac80211_hwsim radio, a wpa_supplicant
# client on another radio inside netns "phone", DHCP from dnsmasq, a TCP round trip.
# @group kernel
# @timeout 300
set -u
. "$VT_SCENARIOS/_wifi-common.sh"
PASS='correct horse battery staple'
vt_hwsim root phone
wifi_ap "$PASS"
wifi_client phone wlan1 "$PASS"
vt_wait 120 grep -q CTRL-EVENT-CONNECTED /tmp/wpa.log ||
  vt_fail "client did not associate: $(grep -E 'CTRL-EVENT|WPA:' /tmp/wpa.log | tail -n1)"
grep -E 'CTRL-EVENT-CONNECTED|Key negotiation completed' /tmp/wpa.log
sta=$(vt_in phone cat /sys/class/net/wlan1/address)
iw dev wlan0 station dump | grep -qi "Station $sta" || vt_fail "AP does not list the client $sta as a station"
vt_in phone iw dev wlan1 link | grep -q "SSID: $WIFI_SSID" || vt_fail "client link is not to $WIFI_SSID"
vt_log "associated (WPA2-PSK, CCMP)"

cat >/run/udhcpc.sh <<'S'
#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/${mask:-24}" dev "$interface" && echo "BOUND $ip"
exit 0
S
chmod +x /run/udhcpc.sh
vt_in phone busybox udhcpc -i wlan1 -n -q -t 20 -T 3 -s /run/udhcpc.sh >/tmp/udhcpc.log 2>&1 ||
  vt_fail "no DHCP lease: $(tail -n1 /tmp/udhcpc.log)"
lease=$(sed -n 's/^BOUND //p' /tmp/udhcpc.log)
case $lease in 192.0.2.5[0-9] | 192.0.2.60) ;; *) vt_fail "lease '$lease' outside the dnsmasq range" ;; esac
grep -q "DHCPACK(wlan0) $lease" /tmp/dnsmasq.log || vt_fail "dnsmasq did not log DHCPACK for $lease"
vt_log "DHCP lease $lease"

# TCP round trip across the radio link: an echo server on the AP, a client in the phone netns
socat "TCP-LISTEN:7000,bind=$WIFI_AP_ADDR,reuseaddr,fork" EXEC:cat &
srv=$!
vt_wait 60 sh -c "ss -ltn | grep -q '$WIFI_AP_ADDR:7000'" || vt_fail "echo server did not listen"
token="vigil-$RANDOM-$RANDOM"
got=$(echo "$token" | vt_in phone socat -t 60 - "TCP:$WIFI_AP_ADDR:7000,connect-timeout=30")
kill "$srv" 2>/dev/null
[ "$got" = "$token" ] || vt_fail "TCP round trip: sent '$token', got '$got'"
vt_log "TCP round trip over WPA2 ok ($lease -> $WIFI_AP_ADDR)"
