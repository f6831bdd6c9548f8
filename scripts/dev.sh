#!/bin/sh
# One command from a fresh clone to a running service: toolchain, build, local D1 migrated and seeded,
# console delivery, wrangler dev on http://127.0.0.1:8787.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

if [ ! -f .dev.vars ]; then
  echo "==> writing .dev.vars (console delivery, a fresh OTP_HASH_KEY)"
  umask 077
  cat > .dev.vars <<VARS
# Local development only; never committed. Values here override wrangler.toml [vars].
ENVIRONMENT=development
EMAIL_PROVIDER=console
SMS_PROVIDER=console
OTP_HASH_KEY=$(node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("hex"))')
VARS
fi

node scripts/setup.mjs --create-groups --create-test-user
exec wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}"
