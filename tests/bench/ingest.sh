#!/usr/bin/env bash
# tests/bench/ingest.sh: how fast callsync-ingest takes signed webhooks.
#
# Starts a private Redis (AOF on, appendfsync everysec) and PostgreSQL,
# builds a Release ingest, connects one agent to 3 integrations, and drives
# it with wrk from the same machine:
#   1. GET /healthz, the ceiling: a bare answer on this machine;
#   2. POST /webhooks/retell with distinct, signed call_analyzed webhooks:
#      each is verified, parsed, normalised, looked up (cached) and its 3
#      jobs enqueued by one Redis script before the 202.
# Prints requests/s, p50 and p99 latency for both, jobs enqueued/s, and the
# ratio of the two rates.
#   BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 32),
#   BENCH_INGEST_THREADS (default 1), BENCH_REQUESTS (pool, default 300000)
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$CS_ROOT"

DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_INGEST_THREADS:-1}
POOL=${BENCH_REQUESTS:-300000}
KEY=key_bench_$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')

cs_ensure_packages
cs_build "$CS_ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release
bin=$CS_ROOT/build-bench/bin
dir=$(mktemp -d /tmp/callsync-bench.XXXXXX)
ingest_pid=""
cleanup() {
  [ -n "$ingest_pid" ] && kill "$ingest_pid" 2>/dev/null && wait "$ingest_pid" 2>/dev/null
  cs_stack_down "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
cs_stack_up "$dir"
. "$dir/env"
export CALLSYNC_ENCRYPTION_KEYS=$(cs_dev_keys)
export CALLSYNC_LOG_LEVEL=warn
"$bin/callsyncctl" migrate >/dev/null
org=$("$bin/callsyncctl" orgs add "Bench Roofing")
agent=$("$bin/callsyncctl" agents add --org "$org" --name "Bench desk" \
  --retell-agent-id agent_d8a1c0ffee)
for t in hubspot zapier gohighlevel; do
  "$bin/callsyncctl" connections add --agent "$agent" --type "$t" \
    --auth none >/dev/null
done

port=$(cs_free_port 18080)
CALLSYNC_INGEST_PORT=$port CALLSYNC_INGEST_THREADS=$THREADS \
  CALLSYNC_RETELL_API_KEYS=$KEY "$bin/callsync-ingest" 2>"$dir/ingest.log" &
ingest_pid=$!
for i in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

cs_say "generating $POOL signed webhooks"
"$bin/callsync-benchgen" tests/fixtures/retell/call_analyzed.json "$KEY" \
  "$POOL" "$dir/requests.bin"
"$bin/callsync-benchgen" tests/fixtures/retell/call_analyzed.json "$KEY" \
  "$((POOL / 4))" "$dir/light.bin"
body_bytes=$(( $(stat -c %s "$dir/requests.bin") / POOL ))

jobs_now() {
  curl -fsS "http://127.0.0.1:$port/metrics" |
    awk '/^callsync_ingest_jobs_enqueued_total/ {s += $2} END {print s + 0}'
}
# Answers to /webhooks/retell so far: "accepted other".
answers_now() {
  curl -fsS "http://127.0.0.1:$port/metrics" | awk '
    /^callsync_ingest_requests_total\{route="retell"/ {
      if ($1 ~ /status="202"/) a += $2; else o += $2 }
    END {print a + 0, o + 0}'
}
# wrk --latency prints "     50%  123.00us"; convert to milliseconds.
pct() {
  awk -v p="$1" '$1 == p {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.2f", v}' "$2"
}
rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }

# CPU seconds (user + system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
redis_pid=$(cat "$dir/redis/redis.pid")

cs_say "wrk: GET /healthz for ${DUR}s, $CONNS connections"
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$port/healthz" \
  >"$dir/healthz.txt"
cs_say "wrk: POST /webhooks/retell for ${DUR}s, $CONNS connections"
j0=$(jobs_now)
read -r a0 o0 <<<"$(answers_now)"
i0=$(cpu "$ingest_pid"); r0=$(cpu "$redis_pid")
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s tests/bench/ingest.lua \
  "http://127.0.0.1:$port/webhooks/retell" -- "$dir/requests.bin" 2 \
  >"$dir/retell.txt"
j1=$(jobs_now)
i1=$(cpu "$ingest_pid"); r1=$(cpu "$redis_pid")
read -r a1 o1 <<<"$(answers_now)"
accepted=$((a1 - a0)); other=$((o1 - o0))
cs_say "wrk: POST /webhooks/retell, light load (2 connections) for ${DUR}s"
wrk -t1 -c2 -d"${DUR}s" --latency -s tests/bench/ingest.lua \
  "http://127.0.0.1:$port/webhooks/retell" -- "$dir/light.bin" 1 \
  >"$dir/light.txt"
read -r a2 o2 <<<"$(answers_now)"
stream_jobs=0
for t in hubspot zapier gohighlevel; do
  n=$(redis-cli -p "$CALLSYNC_STACK_REDIS_PORT" XLEN "cs:{0}:q:$t")
  stream_jobs=$((stream_jobs + n))
done

h_rps=$(rps "$dir/healthz.txt")
w_rps=$(awk -v a="$accepted" -v d="$DUR" 'BEGIN {printf "%.0f", a / d}')
cat <<OUT

callsync-ingest benchmark ($(nproc) cores, ingest loops: $THREADS, wrk: 2 threads, $CONNS connections, ${DUR}s each)
request body: ${body_bytes} bytes (signed Retell call_analyzed, 3 connections per agent)

| endpoint                 | requests/s | p50 ms | p99 ms |
|--------------------------|-----------:|-------:|-------:|
| GET /healthz             | $(printf %10s "$h_rps") | $(printf %6s "$(pct 50% "$dir/healthz.txt")") | $(printf %6s "$(pct 99% "$dir/healthz.txt")") |
| POST /webhooks/retell    | $(printf %10s "$w_rps") | $(printf %6s "$(pct 50% "$dir/retell.txt")") | $(printf %6s "$(pct 99% "$dir/retell.txt")") |
| same, 2 connections      | $(printf %10s "$(rps "$dir/light.txt")") | $(printf %6s "$(pct 50% "$dir/light.txt")") | $(printf %6s "$(pct 99% "$dir/light.txt")") |

webhooks accepted (202): $accepted, other answers: $other (light run: $((a2 - a1)) and $((o2 - o1)))
jobs enqueued: $((j1 - j0)) ($(awk -v j="$((j1 - j0))" -v d="$DUR" 'BEGIN {printf "%.0f", j / d}')/s), jobs in the streams after both runs: $stream_jobs
CPU during the webhook run: ingest $(awk -v a="$i0" -v b="$i1" 'BEGIN {printf "%.1f", b - a}') s, redis $(awk -v a="$r0" -v b="$r1" 'BEGIN {printf "%.1f", b - a}') s (of $((2 * DUR)) s on $(nproc) cores)
webhooks/s as a share of /healthz: $(awk -v a="$w_rps" -v b="$h_rps" 'BEGIN {printf "%.2f", a / b}')
OUT
if [ "$other" != "0" ] || [ "$o2" != "$o1" ]; then
  echo "note: $((other + o2 - o1)) answers were not 202 (pool exhausted → duplicates, or errors); see $dir/ingest.log" >&2
fi
