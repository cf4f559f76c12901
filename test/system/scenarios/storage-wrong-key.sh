#!/bin/bash
# Storage: the OTP key no longer matches (another board / changed OTP) -> `locked` with a clear
# status (exit 3, reason wrong-key); a wrong recovery key keeps it locked; the right recovery
# key typed on stdin (lower case, spaces) unlocks and mounts it.
# @timeout 900
# @disk data 64M
# @disk persist 16M
set -u
. "$VT_SCENARIOS/_storage-common.sh"
st_setup aes-xts
st_unlock 0
rk=$(vigil storage recovery key) || vt_fail "cannot read the recovery key"
echo "$rk" | grep -Eq '^([0-9A-Z]{4}-){7}[0-9A-Z]{4}$' || vt_fail "odd recovery key format"
echo keep >"$ST_MNT/keep.txt"
vt_check "lock" vigil storage lock

echo "$OTP_B" >/run/otp.hex
st_unlock 3
case $ST_OUT in *"locked: wrong-key"*"otp: wrong key"*"waiting for: recovery"*) ;; *) vt_fail "unclear locked status: $ST_OUT" ;; esac
[ ! -e /dev/mapper/vigil-data ] || vt_fail "a wrong key opened the volume"
json=$(vigil storage status --json)
echo "$json"
case $json in *'"headerValid":true'*'"open":false'*) ;; *) vt_fail "status: $json" ;; esac

out=$(echo "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH" | vigil storage unlock --recovery 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 3 ] || vt_fail "wrong recovery key: exit $rc, expected 3"
typed=$(echo "$rk" | tr 'A-Z-' 'a-z ')
out=$(printf '%s\n' "$typed" | vigil storage unlock --recovery 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || vt_fail "recovery unlock failed: $out"
[ "$(cat "$ST_MNT/keep.txt")" = keep ] || vt_fail "data missing after recovery unlock"
vigil storage lock
vt_log "wrong key -> locked; recovery key unlocks"
