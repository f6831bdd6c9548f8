#!/bin/sh
# Every test: host unit tests of the core, then end-to-end tests of the built worker in workerd (wrangler dev)
# against a local mock of the providers' APIs. Offline; only 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

echo "==> cargo clippy (every target, the login Worker and the provisioning Worker; warnings are errors)"
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features scim -- -D warnings

echo "==> cargo test (the login use cases and SCIM on the production SQL in SQLite, request formats, HTTP parsing)"
cargo test --lib --bins --locked --features scim
cargo test --quiet --manifest-path tools/admin-check/Cargo.toml --locked

echo "==> wasm-bindgen-test (the runtime adapters compiled to wasm32, run under Node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --locked --target wasm32-unknown-unknown --test runtime

echo "==> building the login Worker and the provisioning Worker once for every end-to-end test file"
# A cold build of each takes minutes on a small machine; inside a test file it would count against that file's
# time limit.
sh scripts/build.sh
sh scripts/build.sh scim
export E2E_SKIP_BUILD=1

echo "==> end-to-end tests (built worker under wrangler dev, mock Resend and Twilio)"
node --test --test-concurrency=1 --test-timeout=300000 "tests/e2e/**/*.test.mjs"
