#!/bin/sh
# Every test: host unit tests of the core, then end-to-end tests of the built worker in workerd (wrangler dev)
# against a local mock of the providers' APIs. Offline; only 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

echo "==> cargo test (core, adapters' request formats, HTTP parsing)"
cargo test --lib --bins --locked
cargo test --quiet --manifest-path tools/admin-check/Cargo.toml --locked

echo "==> end-to-end tests (built worker under wrangler dev, mock Resend and Twilio)"
node --test --test-concurrency=1 --test-timeout=300000 "tests/e2e/**/*.test.mjs"
