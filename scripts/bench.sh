#!/bin/sh
# The benchmark (bench/run.mjs): the built worker and a no-op Worker under wrangler dev, driven by autocannon on
# 127.0.0.1. Offline; takes about two minutes.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
exec node bench/run.mjs "$@"
