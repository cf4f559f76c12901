# Shared by the kernel-wifi-* scenarios: a WPA2-PSK access point (hostapd + dnsmasq) on
# a hwsim radio in the root namespace and a wpa_supplicant client in netns "phone".
# Vigil's own hotspot/station adapters replace this in the wifi/pairing areas' scenarios.
WIFI_SSID=Vigil-Test
WIFI_AP_ADDR=192.0.2.1

wifi_cleanup() {
  local p
  for p in /run/vt-hostapd.pid /run/vt-dnsmasq.pid /run/vt-wpa.pid; do
    [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
  done
  return 0
}
trap wifi_cleanup EXIT
rm -f /tmp/hostapd.log /tmp/wpa.log /tmp/dnsmasq.log /tmp/dnsmasq.leases

# wifi_ap PASSPHRASE: hostapd on wlan0 (root ns) + dnsmasq DHCP on it.
wifi_ap() {
  umask 077
  cat >/run/vt-hostapd.conf <<C
interface=wlan0
driver=nl80211
ssid=$WIFI_SSID
hw_mode=g
channel=6
country_code=US
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=$1
ctrl_interface=/run/hostapd
C
  umask 022
  ip addr add "$WIFI_AP_ADDR/24" dev wlan0
  hostapd -B -P /run/vt-hostapd.pid -f /tmp/hostapd.log /run/vt-hostapd.conf ||
    vt_fail "hostapd did not start: $(tail -n1 /tmp/hostapd.log)"
  vt_wait 90 grep -q AP-ENABLED /tmp/hostapd.log || vt_fail "hostapd: AP not enabled: $(tail -n1 /tmp/hostapd.log)"
  dnsmasq --conf-file=/dev/null --user=root --interface=wlan0 --bind-interfaces --port=0 \
    --dhcp-range=192.0.2.50,192.0.2.60,1h --dhcp-leasefile=/tmp/dnsmasq.leases \
    --pid-file=/run/vt-dnsmasq.pid --log-dhcp --log-facility=/tmp/dnsmasq.log ||
    vt_fail "dnsmasq did not start"
  vt_log "AP $WIFI_SSID up on wlan0"
}

# wifi_client NETNS IFACE PASSPHRASE: wpa_supplicant in NETNS (log /tmp/wpa.log).
wifi_client() {
  local ns=$1 ifc=$2
  umask 077
  # the passphrase goes through a root-only file, never argv
  printf 'ctrl_interface=/run/wpa_supplicant\nnetwork={\n  ssid="%s"\n  psk="%s"\n  key_mgmt=WPA-PSK\n}\n' \
    "$WIFI_SSID" "$3" >/run/vt-wpa.conf
  umask 022
  vt_in "$ns" wpa_supplicant -B -D nl80211 -i "$ifc" -c /run/vt-wpa.conf -P /run/vt-wpa.pid -f /tmp/wpa.log ||
    vt_fail "wpa_supplicant did not start"
}
