#!/bin/sh
# A V8 CPU profile of the Worker while one scenario runs (bench/profile.mjs): npm run profile -- me|generate|verify|404.
# Offline; about a minute.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
exec node bench/profile.mjs "$@"
