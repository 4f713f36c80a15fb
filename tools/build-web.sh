#!/usr/bin/env bash
# Builds the /verify page's verifier: Candor's receipt verification
# (tools/candor-web over candor::receipt) compiled to WebAssembly, and its
# JavaScript glue, into src/web/pkg/. `candor serve` embeds those files with
# include_bytes!, so they are committed; tools/test.sh runs this first so that
# the tests always exercise freshly built WebAssembly.
#
# Installs what it needs, idempotently: the wasm32-unknown-unknown rustup
# target and wasm-bindgen-cli of exactly the wasm-bindgen version Cargo.lock
# pins (the CLI and the library must match, or the glue does not load).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=wasm32-unknown-unknown
PROFILE=wasm-release
OUT=src/web/pkg

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
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS='--cfg getrandom_backend="wasm_js"' \
  cargo build -p candor-web --target "$TARGET" --profile "$PROFILE"

echo "== wasm-bindgen --target web --out-dir $OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" \
  "target/$TARGET/$PROFILE/candor_web.wasm"
rm -f "$OUT/package.json" "$OUT/.gitignore"

size=$(wc -c <"$OUT/candor_web_bg.wasm")
echo "== $OUT/candor_web_bg.wasm: $size bytes; $OUT/candor_web.js: $(wc -c <"$OUT/candor_web.js") bytes"
