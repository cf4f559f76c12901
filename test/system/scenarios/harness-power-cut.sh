#!/bin/bash
# Harness self-test for power-cut scenarios (storage, OTA): boot 1 writes one file with fsync
# and one without, then the host SIGKILLs qemu at the marker; boot 2 sees the same data disk:
# the fsynced file survived intact, the unsynced one did not.
# @timeout 180
# @boots 2
# @disk data 64M
# @kill-at 1 after-writes
set -u
DEV=$(vt_disk data)
mkdir -p /mnt/data
if [ "$VT_BOOT" -eq 1 ]; then
  # keep unsynced data in the page cache: no periodic writeback, long journal commit interval
  echo 0 >/proc/sys/vm/dirty_writeback_centisecs
  echo 360000 >/proc/sys/vm/dirty_expire_centisecs
  vt_check "mkfs" mkfs.ext4 -q "$DEV"
  vt_check "mount" mount -o commit=600 "$DEV" /mnt/data
  sync
  head -c 65536 /dev/urandom >/mnt/data/synced
  sha256sum /mnt/data/synced | cut -d' ' -f1 >/run/synced.sha
  vt_check "fsync" dd if=/mnt/data/synced of=/mnt/data/synced.tmp bs=64k conv=fsync status=none
  mv /mnt/data/synced.tmp /mnt/data/durable
  vt_check "fsync dir" sync -f /mnt/data/durable
  cp /run/synced.sha /mnt/data/durable.sha
  vt_check "fsync sha" sync /mnt/data/durable.sha
  echo "this line was never synced" >/mnt/data/volatile
  vt_cut_here after-writes
fi
# boot 2: journal replay on mount, then check what survived the cut
vt_check "mount after power cut" mount "$DEV" /mnt/data
ls -la /mnt/data
[ -f /mnt/data/durable ] || vt_fail "fsynced file lost in the power cut"
[ "$(sha256sum /mnt/data/durable | cut -d' ' -f1)" = "$(cat /mnt/data/durable.sha)" ] ||
  vt_fail "fsynced file corrupted by the power cut"
if [ -s /mnt/data/volatile ]; then vt_fail "unsynced data survived: the cut was not a power cut"; fi
umount /mnt/data
vt_log "power cut: synced data kept, unsynced data lost"
