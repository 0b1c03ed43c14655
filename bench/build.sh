#!/usr/bin/env bash
# Image build benchmark, against a peer measured in the same run:
#  1. a full cache hit of a built image resolves in milliseconds (median of 20 requests);
#  2. a python_packages step (pip install in a build container) compared with a plain
#     `pip install` of the same packages into a fresh venv on the host.
# Starts its own berth server (temporary state, its own ports, subnet and bridge) and removes
# everything it made. Needs root and scripts/install.sh --deps-only.
#   bench/build.sh [PACKAGES]   (default: six,idna)
set -euo pipefail
cd "$(dirname "$0")/.."
packages=${1:-six,idna}
bin=target/release/berth
[ -x "$bin" ] || bin=target/debug/berth
[ -x "$bin" ] || { echo "build berth first (cargo build --release -p berth -p berth-shim)" >&2; exit 1; }

work=$(mktemp -d)
api=127.0.0.1:17471
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

BERTH_PROFILE=$work/profile.json "$bin" server --state-dir "$work/state" --api-listen "$api" \
    --ingress-listen 127.0.0.1:17472 --pod-subnet-v4 10.216.0.0/16 --pod-subnet-v6 none \
    --bridge berthbench0 >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$(cat "$work/state/admin-token")

build() { # build SPEC-JSON -> prints seconds; fails on a build error
    local out
    out=$(curl -sS -o "$work/build.out" -w '%{time_total}' -H "Authorization: Bearer $token" \
        -H 'content-type: application/json' -d "$1" "http://$api/v1/images/build")
    grep -q '"done"' "$work/build.out" || { cat "$work/build.out" >&2; exit 1; }
    echo "$out"
}

pkg_json=$(printf '%s' "$packages" | sed 's/[^,][^,]*/"&"/g')
echo "=> Preparing: default base image and a first build"
build '{"commands": ["true"]}' >/dev/null

echo "=> Full cache hit, 20 requests"
times=()
for _ in $(seq 20); do times+=("$(build '{"commands": ["true"]}')"); done
hit_ms=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}')

echo "=> python_packages step: $packages (berth build step vs host pip install, same packages)"
stamp=$(date +%s%N)
berth_s=$(build "{\"env_vars\": {\"BENCH\": \"$stamp\"}, \"python_packages\": [$pkg_json]}")
python3 -m venv "$work/venv"
start=$(date +%s%N)
PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$work/venv/bin/pip" install -q ${packages//,/ }
pip_s=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.3f", (b-a)/1e9}')

echo
printf 'full cache hit (median of 20):        %8.1f ms\n' "$hit_ms"
printf 'python_packages step in berth:        %8.3f s\n' "$berth_s"
printf 'pip install on the host (same pkgs):  %8.3f s\n' "$pip_s"
awk -v b="$berth_s" -v p="$pip_s" 'BEGIN {printf "ratio berth / pip install:             %8.2fx\n", b/p}'
