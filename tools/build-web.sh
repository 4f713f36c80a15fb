#!/usr/bin/env bash
# Builds the /verify page's verifier: Candor's receipt verification
# (crates/candor-web over candor_core::receipt) compiled to WebAssembly, and its
# JavaScript glue, into crates/candor-web/pkg/. `candor serve` embeds those files
# with include_bytes!, so they are committed.
#
# The build is reproducible: every machine path (this checkout, the target
# directory, Cargo's registry, the toolchain) is remapped, so the bytes depend only
# on the sources, Cargo.lock and the toolchain. `tools/build-web.sh --check`
# builds into a temporary directory and fails if the result differs from the
# committed files; CI runs it (tools/test.sh) instead of overwriting them.
#
# Installs what it needs, idempotently: the wasm32-unknown-unknown rustup
# target and wasm-bindgen-cli of exactly the wasm-bindgen version Cargo.lock
# pins (the CLI and the library must match, or the glue does not load).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=wasm32-unknown-unknown
PROFILE=wasm-release
PKG=crates/candor-web/pkg
OUT=$PKG
CHECK=
if [ "${1:-}" = "--check" ]; then
  CHECK=1
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi

if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "== rustup target add $TARGET"
  rustup target add "$TARGET"
fi

# The wasm-bindgen version Cargo.lock pins: the line after its `name = ` line.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
  echo "build-web.sh: Cargo.lock pins no wasm-bindgen version" >&2
  exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "== cargo install wasm-bindgen-cli $want (found: ${have:-none})"
  # Not --locked: one of the CLI's locked dependencies is missing from the
  # registry mirror; the exact version pin is what matters for compatibility.
  cargo install wasm-bindgen-cli --version "$want" --force
fi

echo "== cargo build -p candor-web --target $TARGET --profile $PROFILE"
# getrandom 0.3 (linked by candor's key generation, never called by the
# verifier) needs its browser backend on this target; candor-web enables the
# `wasm_js` feature and this selects it explicitly. Target-specific, so host
# builds keep their flags and their cache.
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
CARGO_DIR=${CARGO_HOME:-$HOME/.cargo}
remap="--remap-path-prefix=$PWD=/candor --remap-path-prefix=$TARGET_DIR=/target"
remap="$remap --remap-path-prefix=$CARGO_DIR=/cargo --remap-path-prefix=$(rustc --print sysroot)=/rustc"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="--cfg getrandom_backend=\"wasm_js\" $remap" \
  cargo build -p candor-web --target "$TARGET" --profile "$PROFILE"

echo "== wasm-bindgen --target web --out-dir $OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" \
  "$TARGET_DIR/$TARGET/$PROFILE/candor_web.wasm"
rm -f "$OUT/package.json" "$OUT/.gitignore"

size=$(wc -c <"$OUT/candor_web_bg.wasm")
echo "== $OUT/candor_web_bg.wasm: $size bytes; $OUT/candor_web.js: $(wc -c <"$OUT/candor_web.js") bytes"

if [ -n "$CHECK" ]; then
  for f in candor_web_bg.wasm candor_web.js; do
    if ! cmp -s "$OUT/$f" "$PKG/$f"; then
      echo "build-web.sh: $PKG/$f differs from a fresh build: run tools/build-web.sh and commit the result" >&2
      exit 1
    fi
  done
  echo "== $PKG matches a fresh build"
fi
