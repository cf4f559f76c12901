#!/bin/bash
# Issue 4b: the same AP with a client holding the wrong passphrase: it must fail to associate,
# and for the stated reason (4-way handshake fails: WRONG_KEY), not for something else.
# @group kernel
# @timeout 300
set -u
. "$VT_SCENARIOS/_wifi-common.sh"
vt_hwsim root phone
wifi_ap 'correct horse battery staple'
wifi_client phone wlan1 'incorrect horse battery staple'
vt_wait 120 grep -q 'reason=WRONG_KEY' /tmp/wpa.log ||
  vt_fail "no WRONG_KEY rejection within 120s: $(grep -E 'CTRL-EVENT|WPA:' /tmp/wpa.log | tail -n1)"
grep -E 'pre-shared key may be incorrect|CTRL-EVENT-SSID-TEMP-DISABLED' /tmp/wpa.log
grep -E 'POSSIBLE-PSK-MISMATCH|4-Way Handshake failed|EAPOL-Key timeout' /tmp/hostapd.log | tail -n2
if grep -q CTRL-EVENT-CONNECTED /tmp/wpa.log; then vt_fail "client connected with the wrong passphrase"; fi
# 802.11 association may succeed before the 4-way handshake fails; what matters is that the
# port never opens: no DHCP lease through it
cat >/run/udhcpc-bad.sh <<'S'
#!/bin/sh
[ "$1" = bound ] && echo "BOUND $ip"
exit 0
S
chmod +x /run/udhcpc-bad.sh
if vt_in phone busybox udhcpc -i wlan1 -n -q -t 3 -T 1 -s /run/udhcpc-bad.sh 2>&1 | grep -q BOUND; then
  vt_fail "client got a DHCP lease with the wrong passphrase"
fi
if grep -q AP-STA-CONNECTED /tmp/hostapd.log; then vt_fail "hostapd reports a connected station"; fi
vt_log "wrong passphrase rejected: WPA 4-way handshake failed (WRONG_KEY)"
