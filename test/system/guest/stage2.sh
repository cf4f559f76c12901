#!/bin/bash
# Stage 2 of a system-test boot (runs as PID 1 in the real root): mount the basics, name the
# disks, mount the project, run this boot's scenarios from /vt/plan, print one
# "VT-RESULT <name> pass|fail <ms> <reason>" line each, return $VT_OUT files through the
# "out" disk, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm /dev/vt
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
hostname vigil-test
ip link set lo up
for s in /sys/block/vd*/serial; do
  d=${s%/serial}
  ln -sfn "/dev/${d##*/}" "/dev/vt/$(cat "$s")"
done
[ -b /dev/vt/project ] && mount -o ro /dev/vt/project /vigil

# shellcheck source=/dev/null
. /vt/plan.env
export VT_BOOT VT_BOOTS VT_SCENARIOS=/vt/scenarios
echo "VT-BOOTED boot=$VT_BOOT/$VT_BOOTS uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

now_ms() { local t; t=$(cut -d' ' -f1 /proc/uptime); echo $((${t%.*} * 1000 + 10#${t#*.} * 10)); }

while read -r name kind tmo file; do
  [ -n "$name" ] || continue
  export VT_SCENARIO=$name VT_OUT=/vt/out/$name VT_REASON_FILE=/run/vt-reason.$name
  mkdir -p "$VT_OUT"
  log=$VT_OUT/$name.log
  echo "VT-START $name"
  t0=$(now_ms)
  case $kind in
    sh) cmd=(bash -c '. /vt/lib.sh; . "$0"' "$file") ;;
    node) cmd=(node "$file") ;;
    *) cmd=(false) ;;
  esac
  # output to the console (live) and to the scenario's log; daemons a scenario leaves behind
  # may keep the pipe open, so nothing here waits for tee
  # a fresh /tmp per scenario (scenarios of a group must not see each other's files)
  mount -t tmpfs -o mode=1777 tmpfs /tmp
  (cd /tmp && exec timeout -k 5 "$tmo" "${cmd[@]}") </dev/null > >(tee -a "$log") 2>&1
  rc=$?
  umount -l /tmp
  sleep 0.2
  ms=$(($(now_ms) - t0))
  if [ "$rc" -eq 0 ]; then
    echo "VT-RESULT $name pass $ms"
  else
    if [ -s "$VT_REASON_FILE" ]; then
      reason=$(head -n1 "$VT_REASON_FILE")
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      reason="timed out after ${tmo}s"
    else
      reason="exit code $rc; last output: $(grep -v '^[[:space:]]*$' "$log" | tail -n1 | cut -c1-200)"
    fi
    echo "VT-RESULT $name fail $ms $reason"
  fi
done </vt/plan

if [ -b /dev/vt/out ]; then
  tar -C /vt/out -cf /dev/vt/out . 2>/dev/null
fi
sync
echo "VT-DONE boot=$VT_BOOT uptime=$(cut -d' ' -f1 /proc/uptime)"
busybox poweroff -f
echo o >/proc/sysrq-trigger
sleep 10
