#!/bin/sh
# The scaling model (bench/scaling.mjs): a login's storage work as the Worker counts it, local D1's statement time,
# and published limits and round-trip times. Offline; about a minute.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
exec node bench/scaling.mjs "$@"
