#!/usr/bin/env bash
# Runs every test: unit tests (Rust and the Python SDK's) and the end-to-end suite (real
# server, registry, runc, CNI).
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
python3 -m unittest discover -s sdk/python/tests -t sdk/python 2>&1 | tee -a "$log"
py_status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] && status=$py_status
set -e
# One closing line over all the suites (cargo and unittest).
# Python's unittest prints "Ran N tests" and then "OK" or "FAILED (failures=F, errors=E)".
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^Ran [0-9]+ tests? in/ { ran = $2 }
     /^(OK|FAILED)/ && ran != "" {
         bad = 0; line = $0
         while (match(line, /(failures|errors)=[0-9]+/)) {
             n = substr(line, RSTART, RLENGTH); sub(/.*=/, "", n); bad += n
             line = substr(line, RSTART + RLENGTH)
         }
         p += ran - bad; f += bad; ran = "" }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
