#!/usr/bin/env bash
# Runs every test: unit tests and the end-to-end suite (real server, registry, runc, CNI).
# Needs root and the packages from scripts/install.sh --deps-only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast -- --test-threads="${BERTH_TEST_THREADS:-4}"
