# Shared setup for storage-* scenarios (sourced). Simulates one board across boots:
#  - /dev/vt/persist: the board's root filesystem state (VIGIL_ROOT=/persist/root), since the
#    guest's / is snapshot=on; holds the first-boot record and the provisioning directory;
#  - /dev/vt/data: the SD card's data partition (GPT partition named "vigil-data");
#  - /run/otp.hex: the simulated OTP (same bytes every boot = same board).
# Real dm-crypt, cryptsetup, mkfs.ext4, mount: only the OTP is simulated.

OTP_A=a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5
OTP_B=0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b
ST_SECRET="vigil-provisioning-secret-$VT_SCENARIO"
ST_BUNDLE='{"format":"vigil-provisioning-bundle","version":1,"secret":"'"$ST_SECRET"'"}'

vigil() { node /vigil/dist/bin/vigil.js "$@"; }

# st_setup [cipher]: on boot 1 make the persist fs, partition the data disk, provision.
st_setup() {
  vt_dmcrypt
  ST_PERSIST=$(vt_disk persist)
  ST_DISK=$(vt_disk data)
  if [ "$VT_BOOT" -eq 1 ]; then
    vt_check "mkfs persist" mkfs.ext4 -q "$ST_PERSIST"
    printf 'label: gpt\nstart=2048, name="vigil-data"\n' | sfdisk -q "$ST_DISK" || vt_fail "sfdisk failed"
  fi
  mkdir -p /persist
  vt_check "mount persist" mount "$ST_PERSIST" /persist
  vt_wait 5 test -b "${ST_DISK}1" || vt_fail "partition ${ST_DISK}1 did not appear"
  ST_PART=${ST_DISK}1
  export VIGIL_ROOT=/persist/root VIGIL_OTP=simulated:/run/otp.hex VIGIL_KEY_SOURCES=otp
  export VIGIL_STORAGE_CIPHER=${1:-auto} VIGIL_KEY_DIR=/run/vigil/keys
  ST_MNT=$VIGIL_ROOT/var/lib/vigil/data
  ST_RECORD=$VIGIL_ROOT/var/lib/vigil/storage/record.json
  # /run is a tmpfs on the board: nothing under it (locks, key files) survives a reboot.
  # Here the board's root lives on the persist disk, so empty its /run at every boot.
  rm -rf "$VIGIL_ROOT/run"
  echo "$OTP_A" >/run/otp.hex
  if [ "$VT_BOOT" -eq 1 ]; then
    mkdir -p "$VIGIL_ROOT/boot/vigil-provisioning"
    printf '%s\n' "$ST_BUNDLE" >"$VIGIL_ROOT/boot/vigil-provisioning/device.json"
    sync
  fi
}

# st_unlock EXPECTED_RC: run `vigil storage unlock`, keep its output in $ST_OUT.
st_unlock() {
  local want=$1 rc
  shift
  ST_OUT=$(vigil storage unlock "$@" 2>/run/unlock.err)
  rc=$?
  printf '%s\n' "$ST_OUT"
  tail -n 5 /run/unlock.err
  [ "$rc" -eq "$want" ] || vt_fail "vigil storage unlock: exit $rc, expected $want: $ST_OUT $(tail -n1 /run/unlock.err | cut -c1-200)"
}

st_record_field() { sed -n 's/.*"'"$1"'": "\([^"]*\)".*/\1/p' "$ST_RECORD"; }

# st_check_ready: volume ready, secrets moved, plaintext gone, mounted.
st_check_ready() {
  [ "$(cryptsetup luksDump "$ST_PART" | sed -n 's/^Subsystem:[[:space:]]*//p')" = vigil-ready ] || vt_fail "LUKS subsystem is not vigil-ready"
  [ "$(st_record_field phase)" = ready ] || vt_fail "first-boot record is not 'ready'"
  [ "$(cat "$ST_MNT/provisioning/device.json")" = "$ST_BUNDLE" ] || vt_fail "provisioning secret missing or changed in the volume"
  [ ! -e "$VIGIL_ROOT/boot/vigil-provisioning/device.json" ] || vt_fail "plaintext provisioning secret still present"
  findmnt -n "$ST_MNT" >/dev/null || vt_fail "volume not mounted at $ST_MNT"
  [ "$(cryptsetup luksUUID "$ST_PART")" = "$(st_record_field luksUuid)" ] || vt_fail "LUKS UUID differs from the first-boot record"
}

# st_no_plaintext: nothing secret on the raw partition or the persist disk.
st_no_plaintext() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  if grep -a -q -F "$ST_SECRET" "$ST_PART"; then vt_fail "provisioning secret in plaintext on the raw data partition"; fi
  if [ -n "${1:-}" ] && grep -a -q -F "$1" "$ST_PART"; then vt_fail "clip marker in plaintext on the raw data partition"; fi
}
