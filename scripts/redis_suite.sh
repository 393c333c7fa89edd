#!/usr/bin/env bash
# Runs Redis 7.0.15's own unit tests (../shared/redis-tests, see its README) against a
# persimmon-redis started here, and prints ok/err/exc per unit beside real redis-server's ok
# count from that README.
#
#   scripts/redis_suite.sh [--persistence persimmon|none] [unit ...]   (default: all 23)
#
# Needs tclsh (Debian package tcl). Logs of failures: $SUITE_LOGDIR (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SUITE=${REDIS_SUITE:-$ROOT/../shared/redis-tests}
MODE=persimmon
if [[ ${1:-} == --persistence ]]; then MODE=$2; shift 2; fi
if [[ ! -x $SUITE/run.sh ]]; then
  echo "redis_suite.sh: Redis's test suite not found at $SUITE (set REDIS_SUITE)" >&2; exit 2
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d /dev/shm/persimmon-redis-suite.XXXXXX)
PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH} python3 -m persimmon_redis --port "$PORT" \
  --persistence "$MODE" --dir "$DIR" >"$DIR.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR" "$DIR.log"' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
  sleep 0.1
done
# runtest's own helper port: a free one, so parallel runs do not collide
OUT=$(SUITE_ARGS="${SUITE_ARGS:-} --baseport $((BASE % 20000 + 30000))" "$SUITE/run.sh" 127.0.0.1 "$PORT" "$@" | tee /dev/stderr) || true
echo
echo "unit                          persimmon-redis ok   redis-server ok"
while read -r unit rest; do
  [[ $unit == unit/* ]] || continue
  ok=${rest#ok=}; ok=${ok%% *}
  real=$(grep -o "| $unit | [0-9]*" "$SUITE/README.md" | grep -o '[0-9]*$' || echo '?')
  printf '%-30s %18s %17s\n' "$unit" "$ok" "$real"
done <<< "$OUT"
