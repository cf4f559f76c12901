#!/bin/bash
# Storage: a corrupted LUKS header -> unlock fails with "header-corrupt" and nothing is
# formatted; `vigil storage recovery restore-header` with the backup made at first boot
# (escrowed to the phone) restores it; the OTP key unlocks again and the data is intact.
# @timeout 900
# @disk data 64M
# @disk persist 16M
set -u
. "$VT_SCENARIOS/_storage-common.sh"
st_setup aes-xts
st_unlock 0
head -c 1048576 /dev/urandom >"$ST_MNT/clip.bin"
sum=$(sha256sum "$ST_MNT/clip.bin" | cut -d' ' -f1)
cp "$ST_MNT/.vigil/recovery/luks-header.img" /run/escrowed-header.img
uuid=$(cryptsetup luksUUID "$ST_PART")
vt_check "lock" vigil storage lock

# destroy both LUKS2 header copies and the keyslots area
dd if=/dev/urandom of="$ST_PART" bs=1M count=2 conv=notrunc,fsync status=none
cryptsetup isLuks "$ST_PART" && vt_fail "header still valid after corruption"
st_unlock 3
case $ST_OUT in *"locked: header-corrupt"*"restore-header"*) ;; *) vt_fail "unclear status for a corrupt header: $ST_OUT" ;; esac
cryptsetup isLuks "$ST_PART" && vt_fail "something wrote a new LUKS header (formatted?)"

out=$(vigil storage recovery restore-header --from /run/escrowed-header.img 2>&1) || vt_fail "restore-header failed: $out"
echo "$out"
[ "$(cryptsetup luksUUID "$ST_PART")" = "$uuid" ] || vt_fail "restored header has another UUID"
st_unlock 0
case $ST_OUT in *"unlocked (otp"*) ;; *) vt_fail "OTP unlock after restore: $ST_OUT" ;; esac
[ "$(sha256sum "$ST_MNT/clip.bin" | cut -d' ' -f1)" = "$sum" ] || vt_fail "data changed after header restore"
vigil storage lock
vt_log "corrupt header -> locked -> restored -> data intact"
