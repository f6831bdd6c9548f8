#!/bin/sh
# Builds a worker with worker-build, using only tools installed from the registries (scripts/bootstrap.sh puts them
# in place). Run by wrangler as the [build] command:
#   sh scripts/build.sh         the login Worker (wrangler.toml) into build/
#   sh scripts/build.sh scim    the provisioning Worker (wrangler.scim.toml: the same service plus SCIM) into
#                               build-scim/, in a target directory of its own so that both builds stay incremental
set -eu
cd "$(dirname "$0")/.."

OUT=build
if [ "${1:-}" = "scim" ]; then
  OUT=build-scim
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/scim"
  set -- . --features scim
else
  set --
fi

# The test harness builds once and then starts several dev servers; they must not rebuild.
if [ "${SKIP_WORKER_BUILD:-}" = "1" ]; then
  exit 0
fi

# worker-build would otherwise download these from GitHub, which is not reachable offline.
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/@esbuild/linux-x64/bin/esbuild}"
PATH="$HOME/.cargo/bin:$PATH"
worker-build --release --out-dir "$OUT" "$@"

# Size (Cargo.toml turns worker-build's own wasm-opt step off, which would keep the ~100 KB name section): the
# same -Os and wasm features worker-build uses, without names. Panics still log their message and location.
# KEEP_WASM_NAMES=1 (npm run profile) skips it, so that a CPU profile names the Rust functions.
if [ "${KEEP_WASM_NAMES:-}" = "1" ]; then
  exit 0
fi
"$WASM_OPT_BIN" "$OUT/index_bg.wasm" -o "$OUT/index_bg.opt.wasm" -Os --strip-debug \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
  --enable-multivalue --enable-reference-types --enable-exception-handling
mv "$OUT/index_bg.opt.wasm" "$OUT/index_bg.wasm"
