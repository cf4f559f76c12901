#!/bin/bash
# Issue 4b: the same AP with a client holding the wrong passphrase: it must fail to associate,
# and for the stated reason (4-way handshake fails: WRONG_KEY), not for something else.
# @group kernel
# @timeout 180
set -u
. "$VT_SCENARIOS/_wifi-common.sh"
vt_hwsim root phone
wifi_ap 'correct horse battery staple'
wifi_client phone wlan1 'incorrect horse battery staple'
vt_wait 40 grep -q 'reason=WRONG_KEY' /tmp/wpa.log ||
  vt_fail "no WRONG_KEY rejection within 40s: $(grep -E 'CTRL-EVENT|WPA:' /tmp/wpa.log | tail -n1)"
grep -E 'pre-shared key may be incorrect|CTRL-EVENT-SSID-TEMP-DISABLED' /tmp/wpa.log
grep -E 'POSSIBLE-PSK-MISMATCH|4-Way Handshake failed|EAPOL-Key timeout' /tmp/hostapd.log | tail -n2
if grep -q CTRL-EVENT-CONNECTED /tmp/wpa.log; then vt_fail "client connected with the wrong passphrase"; fi
vt_in phone iw dev wlan1 link | grep -q 'Not connected' || vt_fail "client link is up with the wrong passphrase"
if grep -q AP-STA-CONNECTED /tmp/hostapd.log; then vt_fail "hostapd reports a connected station"; fi
vt_log "wrong passphrase rejected: WPA 4-way handshake failed (WRONG_KEY)"
