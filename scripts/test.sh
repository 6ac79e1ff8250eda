#!/usr/bin/env bash
# Runs every test suite from a fresh clone: installs what is missing, builds once, runs all.
# The README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest" >&2
    cargo install cargo-nextest --locked
fi

# Docker tests need a local busybox image (no registry can be reached).
if [ -S /var/run/docker.sock ] && [ -x scripts/make-busybox-image.sh ]; then
    scripts/make-busybox-image.sh
fi

cargo build --all-targets --locked
cargo nextest run --all-targets --locked --no-fail-fast --profile "${NEXTEST_PROFILE:-default}"
