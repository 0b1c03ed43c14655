#!/usr/bin/env bash
# The benchmark harness: installs the peers (scripts/install.sh --bench-deps), builds berth
# in release mode, then runs each benchmark, every one printing min / median / max and its
# ratio against a peer measured in the same run. The output also goes to
# target/bench/<date>.txt, the record docs/performance.md is made from.
#   bench/run.sh              create (starts, floor, cold start), pull, density
#   bench/run.sh all          the same, then ingress, build, hardening and backpressure
#   bench/run.sh pull ...     only the named ones
# BENCH_RUNS and each script's own BENCH_* settings pass through. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (berth manages namespaces, mounts and cgroups)" >&2; exit 1; }
case "${1:-}" in
    "") benches=(create pull density) ;;
    all) benches=(create pull density ingress build hardening backpressure) ;;
    *) benches=("$@") ;;
esac
for b in "${benches[@]}"; do
    [ -f "bench/$b.sh" ] || { echo "no benchmark bench/$b.sh (have: $(cd bench && ls ./*.sh | sed 's|./||; s|\.sh$||' | grep -v '^run$' | tr '\n' ' '))" >&2; exit 1; }
done

bash scripts/install.sh --bench-deps
echo "=> Building berth (release)"
cargo build --release --locked -p berth -p berth-shim 2>&1 | grep -E '^(error|warning)' || true
[ -x target/release/berth ] && [ -x target/release/berth-shim ] || { echo "error: the release build failed" >&2; exit 1; }

mkdir -p target/bench
record=target/bench/$(date -u +%Y-%m-%dT%H%M%SZ).txt
{
    echo "# bench/run.sh ${benches[*]}, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "# berth $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(runc --version | head -1); $(podman --version 2>/dev/null || echo 'no podman'); $(skopeo --version)"
} | tee "$record"
failed=()
for b in "${benches[@]}"; do
    echo | tee -a "$record"
    echo "## $b" | tee -a "$record"
    # Each bench prints progress lines ("=> ...") then its results; the record keeps both.
    if ! bash "bench/$b.sh" 2>&1 | tee -a "$record"; then
        failed+=("$b")
    fi
done
echo
echo "=> Recorded in $record"
[ ${#failed[@]} -eq 0 ] || { echo "error: these benchmarks failed: ${failed[*]}" >&2; exit 1; }
