#!/bin/bash
# Issue 4a: LUKS2 on a real dm-crypt: format, open, mkfs, mount, write, close, reopen, read
# back; the plaintext never reaches the raw disk; a wrong key does not open it.
# @group kernel
# @timeout 300
# @disk luks 64M
set -u
DEV=$(vt_disk luks)
KEY=/run/luks.key BAD=/run/luks.bad MARK="vigil-plaintext-marker-$$-$RANDOM"
head -c 32 /dev/urandom >"$KEY"
printf 'not the key' >"$BAD"
vt_dmcrypt

# cheap PBKDF: the cost of argon2id under TCG says nothing about the product
vt_check "luksFormat" cryptsetup luksFormat --type luks2 --batch-mode \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$KEY" "$DEV"
cryptsetup isLuks --type luks2 "$DEV" || vt_fail "isLuks: $DEV is not LUKS2 after luksFormat"
vt_check "open" cryptsetup open --key-file "$KEY" "$DEV" vt-data
[ -b /dev/mapper/vt-data ] || vt_fail "open: /dev/mapper/vt-data missing"
cryptsetup status vt-data | grep -q 'type:.*LUKS2' || vt_fail "status: mapping is not LUKS2"
vt_check "mkfs" mkfs.ext4 -q -E lazy_itable_init=1,lazy_journal_init=1 /dev/mapper/vt-data
mkdir -p /mnt/data
vt_check "mount" mount /dev/mapper/vt-data /mnt/data
printf '%s\n' "$MARK" >/mnt/data/secret.txt
sync
vt_check "umount" umount /mnt/data
vt_check "close" cryptsetup close vt-data
[ ! -e /dev/mapper/vt-data ] || vt_fail "close: mapping still present"

# the raw device holds ciphertext only
echo 3 >/proc/sys/vm/drop_caches
vt_log "searching the raw disk for the plaintext"
if grep -a -q -F "$MARK" "$DEV"; then vt_fail "plaintext marker found on the raw disk $DEV"; fi
vt_log "plaintext absent from raw $DEV"

# wrong key: rc 2 (no key available with this passphrase), no mapping
cryptsetup open --key-file "$BAD" "$DEV" vt-data >/tmp/bad.out 2>&1
rc=$?
cat /tmp/bad.out
[ "$rc" -eq 2 ] || vt_fail "wrong key: expected exit code 2, got $rc"
[ ! -e /dev/mapper/vt-data ] || vt_fail "wrong key opened the volume"

# reopen with the right key and read back
vt_check "reopen" cryptsetup open --key-file "$KEY" "$DEV" vt-data
vt_check "mount again" mount -o ro /dev/mapper/vt-data /mnt/data
got=$(cat /mnt/data/secret.txt)
umount /mnt/data
cryptsetup close vt-data
[ "$got" = "$MARK" ] || vt_fail "read back '$got', wrote '$MARK'"
vt_log "LUKS2 round trip ok"
