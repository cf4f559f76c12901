#!/bin/bash
# Issue 4d: an encode through vicodec's memory-to-memory interface (V4L2 M2M: raw frames on
# the OUTPUT queue, FWHT bitstream on the CAPTURE queue), decoded back and compared (PSNR).
# @group kernel
# @timeout 300
set -u
W=640 H=480 N=10
vt_vicodec
vt_log "encoder $VT_VICODEC_ENC, decoder $VT_VICODEC_DEC"
v4l2-ctl -d "$VT_VICODEC_ENC" --all | grep -qi 'Memory-to-Memory\|M2M' ||
  vt_fail "$VT_VICODEC_ENC is not a memory-to-memory device"

vt_check "test pattern" ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=size=${W}x${H}:rate=30" \
  -frames:v "$N" -pix_fmt yuv420p -f rawvideo -y /tmp/in.yuv
raw=$(stat -c %s /tmp/in.yuv)
[ "$raw" -eq $((W * H * 3 / 2 * N)) ] || vt_fail "raw input is $raw bytes"

vt_check "M2M encode" v4l2-ctl -d "$VT_VICODEC_ENC" \
  --set-fmt-video-out=width=$W,height=$H,pixelformat=YU12 --set-fmt-video=pixelformat=FWHT \
  --stream-mmap --stream-out-mmap --stream-from=/tmp/in.yuv --stream-to=/tmp/out.fwht --stream-count=$N
enc=$(stat -c %s /tmp/out.fwht)
vt_log "encoded $N frames: $raw raw bytes -> $enc FWHT bytes"
[ "$enc" -gt 0 ] || vt_fail "encoder produced no output"
[ "$enc" -lt "$raw" ] || vt_fail "encoder output ($enc bytes) is not smaller than its input ($raw)"
head -c 4 /tmp/out.fwht | xxd -p | grep -qi '^4f4f4f4f' ||
  vt_fail "output does not start with the FWHT frame magic"

vt_check "M2M decode" v4l2-ctl -d "$VT_VICODEC_DEC" \
  --set-fmt-video-out=pixelformat=FWHT --set-fmt-video=pixelformat=YU12 \
  --stream-mmap --stream-out-mmap --stream-from=/tmp/out.fwht --stream-to=/tmp/dec.yuv --stream-count=$N
dec=$(stat -c %s /tmp/dec.yuv)
[ "$dec" -eq "$raw" ] || vt_fail "decoded $dec bytes, expected $raw"
psnr=$(ffmpeg -hide_banner -f rawvideo -pix_fmt yuv420p -s ${W}x${H} -i /tmp/in.yuv \
  -f rawvideo -pix_fmt yuv420p -s ${W}x${H} -i /tmp/dec.yuv -lavfi psnr -f null - 2>&1 |
  sed -n 's/.* average:\([0-9.inf]*\).*/\1/p' | tail -1)
vt_log "round trip PSNR ${psnr} dB"
[ -n "$psnr" ] || vt_fail "could not compute PSNR"
awk -v p="$psnr" 'BEGIN { exit !(p == "inf" || p + 0 >= 30) }' || vt_fail "PSNR $psnr dB < 30: not a faithful encode"
cp /tmp/out.fwht "$VT_OUT/" 2>/dev/null
