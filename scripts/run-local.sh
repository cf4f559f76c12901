#!/usr/bin/env bash
# Run a full local Vigil on a fresh Debian 12 machine (as root, or with sudo
# available): installs what the local run needs, builds, then starts the hub
# with a simulated camera, the relay and the browser viewer on loopback,
# paired automatically in development mode. Ctrl-C stops everything.
#
#   bash scripts/run-local.sh [vigil dev options...]     (see: vigil dev --help)
#
# Each step says what it is doing; the output of apt-get, npm ci and the build
# goes to a log file and is summarised (shown in full when a step fails).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
LOG=$(mktemp "${TMPDIR:-/tmp}/vigil-run-local.XXXXXX.log")

say() { printf '[run-local] %s\n' "$*"; }

# quietly LABEL CMD...: run CMD with its output in $LOG; show the elapsed time
# while it runs (on a terminal), a summary line when done, the tail on failure.
quietly() {
  local label=$1; shift
  local start=$SECONDS
  : >"$LOG"
  "$@" >"$LOG" 2>&1 &
  local pid=$!
  if [ -t 1 ]; then
    while kill -0 "$pid" 2>/dev/null; do
      printf '\r[run-local]   %s... %ds' "$label" $((SECONDS - start))
      sleep 1
    done
    printf '\r\033[K'
  fi
  if ! wait "$pid"; then
    say "$label failed after $((SECONDS - start)) s; the last lines of its output:"
    tail -n 25 "$LOG" | sed 's/^/    /' >&2
    say "full output: $LOG"
    exit 1
  fi
  say "  $label: done in $((SECONDS - start)) s"
}

say "1/4 checking system packages (ffmpeg, Node.js >= 20, a C++ toolchain)"
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v node >/dev/null || need+=(nodejs npm)
command -v g++ >/dev/null || need+=(g++ make python3)
if [ ${#need[@]} -gt 0 ]; then
  say "  installing ${need[*]} with apt-get"
  quietly "apt-get update" $SUDO apt-get update
  quietly "apt-get install" env DEBIAN_FRONTEND=noninteractive \
    $SUDO apt-get install -y --no-install-recommends "${need[@]}"
else
  say "  all present"
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  say "Node.js >= 20 is required (found $(node --version))." >&2
  exit 1
fi

say "2/4 npm dependencies"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "  npm ci (a first install takes a minute or two)"
  quietly "npm ci" npm ci --no-audit --no-fund
  # npm's own summary, e.g. "added 512 packages in 96s"
  summary=$(grep -E '^(added|removed|changed|up to date)' "$LOG" | tail -n 1 || true)
  [ -z "$summary" ] || say "  $summary"
else
  say "  up to date"
fi

say "3/4 building (TypeScript -> dist/)"
quietly "build" npm run --silent build

say "4/4 starting vigil dev: the viewer URL is printed once everything is up"
rm -f "$LOG"
exec node dist/bin/vigil.js dev "$@"
