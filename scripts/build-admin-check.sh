#!/bin/sh
# Rebuilds scripts/lib/admin-check.wasm (committed, so that the admin command needs only Node) from
# src/admin_check.rs and the domain parsers it uses. Run it after changing any file that
# tools/admin-check/build.rs lists; the admin command's tests refuse a module built from other sources.
set -eu
cd "$(dirname "$0")/.."
PATH="$HOME/.cargo/bin:$PATH"
# Paths would otherwise end up in panic locations inside the module.
RUSTFLAGS="--remap-path-prefix=$PWD=. --remap-path-prefix=$HOME=~" \
  cargo build --quiet --release --target wasm32-unknown-unknown --manifest-path tools/admin-check/Cargo.toml
cp tools/admin-check/target/wasm32-unknown-unknown/release/admin_check.wasm scripts/lib/admin-check.wasm
echo "scripts/lib/admin-check.wasm: $(wc -c < scripts/lib/admin-check.wasm) bytes"
