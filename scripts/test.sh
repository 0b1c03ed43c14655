#!/usr/bin/env bash
# Runs every test: unit tests and the end-to-end suite (real server, registry, runc, CNI).
# Needs root and the packages from scripts/install.sh --deps-only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast --lib --bins --tests -- \
    --test-threads="${BERTH_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all the suites cargo ran.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
