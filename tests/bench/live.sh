#!/usr/bin/env bash
# tests/bench/live.sh: reply times of the live-call tools under load.
#
# Starts a private Redis and PostgreSQL, builds the binaries, connects
# one agent to a Google Calendar played by callsync-sandbox with
# BENCH_LATENCY_MS (20) of latency per request, and drives POST
# /tools/retell with wrk: BENCH_CALLS (200) connections at once, each a
# caller asking check_availability, every request from a distinct call,
# for BENCH_DURATION (10) seconds. Each request goes ingest -> Redis
# (cs:{0}:live) -> worker -> sandbox freeBusy -> worker -> reply list ->
# ingest. Prints requests/s, p50/p90/p99 reply time, and how the requests
# ended (answered, the deadline's fallback, other).
#   BENCH_CALLS, BENCH_DURATION, BENCH_LATENCY_MS, BENCH_INGEST_THREADS (1),
#   BENCH_LIVE_INFLIGHT (256), BENCH_REQUESTS (pool, 40000)
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$CS_ROOT"

CALLS=${BENCH_CALLS:-200}
DUR=${BENCH_DURATION:-10}
LAT=${BENCH_LATENCY_MS:-20}
THREADS=${BENCH_INGEST_THREADS:-1}
LIVE_INFLIGHT=${BENCH_LIVE_INFLIGHT:-256}
POOL=${BENCH_REQUESTS:-40000}
KEY=key_bench_$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOKEN=ya29.bench-live

cs_ensure_packages
# RelWithDebInfo (-O2): the project's usual build. (A -O3 Release build of
# the sandbox currently stops at a -Wmaybe-uninitialized in gohighlevel.c.)
cs_build "$CS_ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
bin=$CS_ROOT/build/bin
dir=$(mktemp -d /tmp/callsync-bench-live.XXXXXX)
ingest_pid="" worker_pid="" sandbox_pid=""
cleanup() {
  for p in $ingest_pid $worker_pid $sandbox_pid; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  cs_stack_down "$dir"
  [ -n "${BENCH_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
cs_stack_up "$dir"
. "$dir/env"
export CALLSYNC_ENCRYPTION_KEYS=$(cs_dev_keys)
export CALLSYNC_LOG_LEVEL=warn
"$bin/callsyncctl" migrate >/dev/null
org=$("$bin/callsyncctl" orgs add "Bench Roofing")
agent=$("$bin/callsyncctl" agents add --org "$org" --name "Bench desk" \
  --retell-agent-id agent_live_bench)
TOKEN=$TOKEN "$bin/callsyncctl" connections add --agent "$agent" \
  --type google_calendar --access-token-env TOKEN \
  --config '{"calendar_id":"primary","timezone":"America/Chicago","rate_limit":"1000000/1s"}' \
  >/dev/null

sport=$(cs_free_port 18580)
"$bin/callsync-sandbox" --port "$sport" --latency-ms "$LAT" \
  --google-calendar-rate 10000000 >"$dir/sandbox.out" 2>"$dir/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 1 100); do
  grep -q listening "$dir/sandbox.out" 2>/dev/null && break
  sleep 0.05
done
grep -q listening "$dir/sandbox.out" || { cat "$dir/sandbox.log" >&2; exit 1; }
port=$(cs_free_port 18080)
CALLSYNC_INGEST_PORT=$port CALLSYNC_INGEST_THREADS=$THREADS \
  CALLSYNC_RETELL_API_KEYS=$KEY "$bin/callsync-ingest" 2>"$dir/ingest.log" &
ingest_pid=$!
CALLSYNC_WORKER_LIVE_INFLIGHT=$LIVE_INFLIGHT CALLSYNC_WORKER_HOST_CONNS=$LIVE_INFLIGHT \
  CALLSYNC_PROVIDER_BASE_URLS="google_calendar=http://127.0.0.1:$sport/google_calendar" \
  "$bin/callsync-worker" 2>"$dir/worker.log" &
worker_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 &&
    [ "$(redis-cli -p "$CALLSYNC_STACK_REDIS_PORT" EXISTS 'cs:{0}:live')" = 1 ] && break
  sleep 0.1
done

cs_say "generating $POOL signed check_availability requests"
"$bin/callsync-benchgen" live "$KEY" agent_live_bench "$POOL" "$dir/live.bin"

outcomes() {
  curl -fsS "http://127.0.0.1:$port/metrics" | awk '
    /^callsync_ingest_live_requests_total/ {
      o = $1; sub(/.*outcome="/, "", o); sub(/".*/, "", o); n[o] = $2 }
    END {printf "%d %d %d\n", n["answered"], n["deadline"],
         n["failed"] + n["no_calendar"] + n["queue_unavailable"] + n["other"]}'
}
pct() {
  awk -v p="$1" '$1 == p {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.1f", v}' "$2"
}

# A short warm-up (connections to the sandbox, the connection cache).
wrk -t1 -c8 -d2s -s tests/bench/ingest.lua \
  "http://127.0.0.1:$port/tools/retell" -- "$dir/live.bin" 1 >/dev/null
read -r a0 d0 o0 <<<"$(outcomes)"
cs_say "wrk: POST /tools/retell, $CALLS calls at once for ${DUR}s, sandbox latency ${LAT} ms"
wrk -t2 -c"$CALLS" -d"${DUR}s" --timeout 10s --latency -s tests/bench/ingest.lua \
  "http://127.0.0.1:$port/tools/retell" -- "$dir/live.bin" 2 >"$dir/wrk.txt"
read -r a1 d1 o1 <<<"$(outcomes)"
rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$dir/wrk.txt")
cat <<OUT

live-call tools benchmark ($(nproc) cores, ingest loops: $THREADS, CALLSYNC_WORKER_LIVE_INFLIGHT=$LIVE_INFLIGHT, deadline ${CALLSYNC_LIVE_DEADLINE_MS:-5000} ms)
$CALLS concurrent calls, check_availability, sandbox latency ${LAT} ms, ${DUR}s

| requests/s | p50 ms | p90 ms | p99 ms | answered | fallback (deadline) | other |
|-----------:|-------:|-------:|-------:|---------:|--------------------:|------:|
| $rps | $(pct 50% "$dir/wrk.txt") | $(pct 90% "$dir/wrk.txt") | $(pct 99% "$dir/wrk.txt") | $((a1 - a0)) | $((d1 - d0)) | $((o1 - o0)) |
OUT
grep -E "Socket errors|Non-2xx" "$dir/wrk.txt" || true
