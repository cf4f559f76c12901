#!/bin/bash
# Storage: a power cut at a random moment while first boot formats (the plug is pulled as soon
# as the first-boot record appears, i.e. around luksFormat); the next boot finishes the job.
# @timeout 900
# @boots 2
# @disk data 64M
# @disk persist 16M
# @kill-at 1 formatting
set -u
. "$VT_SCENARIOS/_storage-common.sh"
st_setup aes-xts
if [ "$VT_BOOT" -eq 1 ]; then
  vigil storage unlock >/run/u.out 2>&1 &
  vt_wait 600 test -s "$ST_RECORD" || vt_fail "first boot never started formatting"
  vt_cut_here formatting
fi
st_unlock 0
st_check_ready
uuid=$(cryptsetup luksUUID "$ST_PART")
echo durable >"$ST_MNT/after.txt"
sync
vigil storage lock
st_unlock 0
[ "$(cryptsetup luksUUID "$ST_PART")" = "$uuid" ] || vt_fail "second unlock re-formatted"
[ "$(cat "$ST_MNT/after.txt")" = durable ] || vt_fail "data lost"
vigil storage lock
vt_log "random power cut during formatting: recovered"
