#!/bin/bash
# Storage: power cuts (qemu SIGKILLed) during first boot. Boot 1 dies at a numbered durable
# point right after luksFormat+mkfs (VIGIL_CRASH_AT, then the plug is pulled); boot 2 resumes
# WITHOUT re-formatting (same LUKS UUID) and is cut again while moving the secrets; boot 3
# completes with everything intact and still the one volume made on boot 1.
# @timeout 900
# @boots 3
# @disk data 64M
# @disk persist 16M
# @kill-at 1 cut-1
# @kill-at 2 cut-2
set -u
. "$VT_SCENARIOS/_storage-common.sh"
st_setup aes-xts
case $VT_BOOT in
1)
  # crash point 6 = the first durable write after luksFormat/open/mkfs/mount (recovery key)
  VIGIL_CRASH_AT=6 vigil storage unlock >/run/u.out 2>&1
  echo "unlock ended with $? (137 = killed at the crash point)"
  cat /run/u.out
  cryptsetup isLuks "$ST_PART" || vt_fail "boot 1 should have formatted before the crash point"
  [ "$(st_record_field phase)" = formatting ] || vt_fail "record should say formatting"
  vt_cut_here cut-1
  ;;
2)
  uuid1=$(st_record_field luksUuid)
  [ "$(cryptsetup luksUUID "$ST_PART")" = "$uuid1" ] || vt_fail "after cut 1: header UUID differs from the record"
  # resumed run: point 18 = the secret copied into the volume but not yet fsynced (the power
  # cut loses the copy; the plaintext original must still be there for the next boot)
  VIGIL_CRASH_AT=18 vigil storage unlock >/run/u.out 2>&1
  echo "unlock ended with $?"
  cat /run/u.out
  [ "$(cryptsetup luksUUID "$ST_PART")" = "$uuid1" ] || vt_fail "boot 2 re-formatted the volume"
  vt_cut_here cut-2
  ;;
3)
  uuid1=$(st_record_field luksUuid)
  st_unlock 0
  st_check_ready
  [ "$(cryptsetup luksUUID "$ST_PART")" = "$uuid1" ] || vt_fail "volume re-formatted across the cuts"
  [ "$(cryptsetup luksDump "$ST_PART" | grep -c '^  [0-9]*: luks2')" -le 4 ] || vt_fail "orphan keyslots piled up"
  rk=$(vigil storage recovery key)
  printf '%s' "$rk" | cryptsetup open --test-passphrase --key-file - "$ST_PART" || vt_fail "recovery key does not open the volume"
  echo durable >"$ST_MNT/after.txt"
  vigil storage lock
  st_unlock 0
  [ "$(cat "$ST_MNT/after.txt")" = durable ] || vt_fail "data lost across lock/unlock"
  vigil storage lock
  st_no_plaintext
  vt_log "power cuts during first boot: resumed, never re-formatted, data intact"
  ;;
esac
