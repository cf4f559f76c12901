#!/usr/bin/env bash
# Run a full local Vigil on a fresh Debian 12 machine (as root, or with sudo
# available): installs what the local run needs, builds, then starts the hub
# with a simulated camera, the relay and the browser viewer on loopback,
# paired automatically in development mode. Ctrl-C stops everything.
#
#   bash scripts/run-local.sh [vigil dev options...]     (see: vigil dev --help)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v node >/dev/null || need+=(nodejs npm)
command -v g++ >/dev/null || need+=(g++ make python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "[run-local] installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "[run-local] Node.js >= 20 is required (found $(node --version))." >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[run-local] npm ci"
  npm ci --no-audit --no-fund
fi
echo "[run-local] building"
npm run --silent build
exec node dist/bin/vigil.js dev "$@"
