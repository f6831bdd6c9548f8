#!/bin/sh
# Builds the worker into build/ with worker-build, using only tools installed from the registries
# (scripts/bootstrap.sh puts them in place). Run by wrangler as the [build] command.
set -eu
cd "$(dirname "$0")/.."

# The test harness builds once and then starts several dev servers; they must not rebuild.
if [ "${SKIP_WORKER_BUILD:-}" = "1" ]; then
  exit 0
fi

# worker-build would otherwise download these from GitHub, which is not reachable offline.
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/@esbuild/linux-x64/bin/esbuild}"
PATH="$HOME/.cargo/bin:$PATH"
worker-build --release

# Size (Cargo.toml turns worker-build's own wasm-opt step off, which would keep the ~100 KB name section): the
# same -Os and wasm features worker-build uses, without names. Panics still log their message and location.
# KEEP_WASM_NAMES=1 (npm run profile) skips it, so that a CPU profile names the Rust functions.
if [ "${KEEP_WASM_NAMES:-}" = "1" ]; then
  exit 0
fi
"$WASM_OPT_BIN" build/index_bg.wasm -o build/index_bg.opt.wasm -Os --strip-debug \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
  --enable-multivalue --enable-reference-types --enable-exception-handling
mv build/index_bg.opt.wasm build/index_bg.wasm
