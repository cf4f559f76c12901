#!/bin/bash
# Issue 4d: an encode through vicodec's memory-to-memory interface (V4L2 M2M: raw frames on
# the OUTPUT queue, FWHT bitstream on the CAPTURE queue): N frames in, N FWHT frames out,
# smaller than the input; decoded back through the M2M decoder and compared (PSNR).
# @group kernel
# @timeout 300
set -u
W=640 H=480 N=10
FRAME=$((W * H * 3 / 2))
vt_vicodec
vt_log "encoder $VT_VICODEC_ENC, decoder $VT_VICODEC_DEC"
v4l2-ctl -d "$VT_VICODEC_ENC" --all | grep -qi 'Memory-to-Memory\|M2M' ||
  vt_fail "$VT_VICODEC_ENC is not a memory-to-memory device"

# input: a moving gradient in YU12 (node is much quicker to start than ffmpeg under TCG)
vt_check "test pattern" node -e '
const [w, h, n] = process.argv.slice(1).map(Number);
const fs = require("node:fs");
const fd = fs.openSync("/tmp/in.yuv", "w");
for (let k = 0; k < n; k++) {
  const f = Buffer.alloc((w * h * 3) / 2, 128);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) f[y * w + x] = (x + y + 8 * k) & 255;
  fs.writeSync(fd, f);
}
fs.closeSync(fd);' $W $H $N
raw=$(stat -c %s /tmp/in.yuv)
[ "$raw" -eq $((FRAME * N)) ] || vt_fail "raw input is $raw bytes"

vt_check "M2M encode" v4l2-ctl -d "$VT_VICODEC_ENC" \
  --set-fmt-video-out=width=$W,height=$H,pixelformat=YU12 --set-fmt-video=pixelformat=FWHT \
  --stream-mmap --stream-out-mmap --stream-from=/tmp/in.yuv --stream-to=/tmp/out.fwht --stream-count=$N
enc=$(stat -c %s /tmp/out.fwht)
frames=$(xxd -p /tmp/out.fwht | tr -d '\n' | grep -o '4f4f4f4fffffffff' | wc -l)
vt_log "encoded: $raw raw bytes -> $enc FWHT bytes in $frames frames"
[ "$frames" -eq "$N" ] || vt_fail "encoder produced $frames FWHT frames for $N input frames"
[ "$enc" -lt "$raw" ] || vt_fail "encoder output ($enc bytes) is not smaller than its input ($raw)"
cp /tmp/out.fwht "$VT_OUT/" 2>/dev/null

# decode back; v4l2-ctl may stop the decoder before the last frames drain, so compare the
# frames it did return (at least one)
vt_check "M2M decode" v4l2-ctl -d "$VT_VICODEC_DEC" \
  --set-fmt-video-out=pixelformat=FWHT --set-fmt-video=pixelformat=YU12 \
  --stream-mmap --stream-out-mmap --stream-from=/tmp/out.fwht --stream-to=/tmp/dec.yuv --stream-count=$N
dec=$(stat -c %s /tmp/dec.yuv)
k=$((dec / FRAME))
[ "$k" -ge 1 ] && [ $((k * FRAME)) -eq "$dec" ] || vt_fail "decoded $dec bytes: not whole frames of $FRAME"
psnr=$(node -e '
const fs = require("node:fs");
const [w, h, k] = process.argv.slice(1).map(Number);
const a = fs.readFileSync("/tmp/in.yuv"), b = fs.readFileSync("/tmp/dec.yuv");
const frame = (w * h * 3) / 2;
let se = 0;
for (let i = 0; i < k; i++) for (let j = 0; j < w * h; j++) { const d = a[i * frame + j] - b[i * frame + j]; se += d * d; }
const mse = se / (k * w * h);
console.log(mse === 0 ? "inf" : (10 * Math.log10((255 * 255) / mse)).toFixed(2));' $W $H $k)
vt_log "decoded $k/$N frames back, luma PSNR $psnr dB"
[ -n "$psnr" ] || vt_fail "could not compute PSNR"
awk -v p="$psnr" 'BEGIN { exit !(p == "inf" || p + 0 >= 30) }' || vt_fail "PSNR $psnr dB < 30: not a faithful encode"
