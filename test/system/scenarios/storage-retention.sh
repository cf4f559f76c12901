#!/bin/bash
# Storage: the data volume fills up -> `vigil storage retention run` frees space by policy:
# delivered items oldest first; undelivered items are kept while space is not critical.
# @timeout 900
# @disk data 64M
# @disk persist 16M
set -u
. "$VT_SCENARIOS/_storage-common.sh"
st_setup aes-xts
st_unlock 0
mkdir -p "$ST_MNT/clips/2026" "$ST_MNT/thumbnails" "$ST_MNT/pending"
now=$(($(date +%s) * 1000))
items=""
add() { # id cls bytes(MiB) ageDays delivered
  local path="$2/$1.bin"
  [ "$2" = clips ] && path="clips/2026/$1.bin"
  head -c $(($3 * 1048576)) /dev/urandom >"$ST_MNT/$path"
  items="$items${items:+,}{\"id\":\"$1\",\"cls\":\"$2\",\"path\":\"$path\",\"bytes\":$(($3 * 1048576)),\"createdAt\":$((now - $4 * 86400000)),\"delivered\":$5}"
}
add clip-old clips 4 5 true
add clip-mid clips 4 4 true
add clip-undelivered clips 4 6 false
add thumb-old thumbnails 1 7 true
add clip-new clips 4 1 true
printf '{"format":"vigil-retention-index","version":1,"items":[%s]}\n' "$items" >"$ST_MNT/.retention-index.json"
# fill the rest of the disk with an undelivered pending upload
head -c 1000000000 /dev/zero >"$ST_MNT/pending/big.bin" 2>/dev/null
sync
df -B1 "$ST_MNT"
free=$(df -B1 --output=avail "$ST_MNT" | tail -n1)
[ "$free" -lt 2000000 ] || vt_fail "disk did not fill up (free $free)"
echo '{"classes":{"clips":{"maxAgeDays":30},"thumbnails":{"maxAgeDays":30},"pending":{"maxAgeDays":7}},"minFreeBytes":8000000,"criticalFreeBytes":1000000}' >/run/policy.json
out=$(vigil storage retention run --policy /run/policy.json --json 2>&1) || vt_fail "retention run failed: $out"
echo "$out"
df -B1 "$ST_MNT"
free=$(df -B1 --output=avail "$ST_MNT" | tail -n1)
[ "$free" -ge 8000000 ] || vt_fail "retention did not free enough space (free $free)"
[ ! -e "$ST_MNT/thumbnails/thumb-old.bin" ] || vt_fail "oldest delivered item kept"
[ ! -e "$ST_MNT/clips/2026/clip-old.bin" ] || vt_fail "second-oldest delivered item kept"
[ -e "$ST_MNT/clips/2026/clip-new.bin" ] || vt_fail "newest delivered clip deleted although space sufficed"
[ -e "$ST_MNT/clips/2026/clip-undelivered.bin" ] || vt_fail "undelivered clip deleted without critical space"
[ -e "$ST_MNT/pending/big.bin" ] || vt_fail "undelivered pending upload deleted without critical space"
case $out in *'"undeliveredDeleted":[]'*) ;; *) vt_fail "unexpected undelivered deletions: $out" ;; esac
vigil storage lock
vt_log "retention freed space oldest-delivered-first"
