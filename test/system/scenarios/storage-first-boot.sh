#!/bin/bash
# Storage: first boot finds the "vigil-data" partition, LUKS2-formats it (Adiantum, as on a
# Pi without AES instructions), mkfs, mounts, moves the provisioning secret in and removes the
# plaintext; the reboot unlocks with the (simulated) OTP key and the data is intact.
# @timeout 900
# @boots 2
# @disk data 64M
# @disk persist 16M
set -u
. "$VT_SCENARIOS/_storage-common.sh"
st_setup adiantum
CLIP="vigil-clip-marker-$RANDOM$RANDOM"
if [ "$VT_BOOT" -eq 1 ]; then
  st_unlock 0
  case $ST_OUT in *"first boot"*) ;; *) vt_fail "boot 1 was not reported as first boot: $ST_OUT" ;; esac
  st_check_ready
  cryptsetup luksDump "$ST_PART" | sed -n '1,40p'
  cryptsetup luksDump "$ST_PART" | grep -q 'cipher: xchacha12,aes-adiantum-plain64' || vt_fail "segment cipher is not Adiantum"
  cryptsetup luksDump "$ST_PART" | grep -q 'PBKDF:      argon2id' || vt_fail "no argon2id (recovery) keyslot"
  [ "$(cryptsetup luksDump "$ST_PART" | grep -c '^  [0-9]*: luks2')" -eq 3 ] || vt_fail "expected 3 keyslots (OTP, recovery, phone)"
  for f in recovery-key phone-key luks-header.img; do
    [ -s "$ST_MNT/.vigil/recovery/$f" ] || vt_fail "recovery material $f missing"
  done
  echo "$CLIP" >"$ST_MNT/clip.txt"
  echo "$CLIP" >/persist/clip-marker
  vigil storage status
  vt_check "lock" vigil storage lock
  st_no_plaintext "$CLIP"
  exit 0
fi
# boot 2: same board, same OTP
uuid_before=$(st_record_field luksUuid)
st_unlock 0
case $ST_OUT in *"unlocked (otp)"*) ;; *) vt_fail "boot 2 did not unlock with the OTP key: $ST_OUT" ;; esac
case $ST_OUT in *"first boot"*) vt_fail "boot 2 ran first boot again" ;; esac
st_check_ready
[ "$(cryptsetup luksUUID "$ST_PART")" = "$uuid_before" ] || vt_fail "volume was re-formatted"
[ "$(cat "$ST_MNT/clip.txt")" = "$(cat /persist/clip-marker)" ] || vt_fail "data written on boot 1 is gone"
json=$(vigil storage status --json)
echo "$json"
case $json in *'"open":true'*'"mounted":true'*) ;; *) vt_fail "status does not say open+mounted: $json" ;; esac
vigil storage lock
vt_log "first boot + OTP reboot ok"
