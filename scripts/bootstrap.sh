#!/bin/sh
# Installs everything the build and the tests need, from the package registries only, and skips whatever is
# already in place. Safe to run before every start and every test run.
set -eu
cd "$(dirname "$0")/.."
PATH="$HOME/.cargo/bin:$PATH"

say() { printf '==> %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  timeout 900 rustup target add wasm32-unknown-unknown
fi

if ! cargo clippy --version >/dev/null 2>&1; then
  say "adding clippy"
  timeout 900 rustup component add clippy
fi

# Must equal the wasm-bindgen version pinned in Cargo.toml.
if ! wasm-bindgen --version 2>/dev/null | grep -q ' 0\.2\.130$'; then
  say "installing wasm-bindgen-cli 0.2.130 (about two minutes, once)"
  # Not --locked: its lock file pins a webpki-roots version the registry no longer serves.
  cargo install wasm-bindgen-cli --version 0.2.130
fi

if ! worker-build --version 2>/dev/null | grep -q '0\.8\.7'; then
  if ! pkg-config --exists openssl 2>/dev/null; then
    say "installing pkg-config and libssl-dev for worker-build"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pkg-config libssl-dev >/dev/null
  fi
  say "installing worker-build 0.8.7 (about three minutes, once)"
  cargo install --locked worker-build --version 0.8.7
fi

# Debian's Chromium for the browser test (tests/e2e/browser.test.mjs drives it with playwright-core; never
# `npx playwright install`, which downloads a browser from outside the package registries).
if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (Debian package, for the browser test)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# node_modules/.package-lock.json is npm's record of the last install.
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (wrangler, Node 22, binaryen)"
  npm ci --no-audit --no-fund
fi
