#!/usr/bin/env bash
# tests/bench/worker.sh: how fast callsync-worker delivers jobs.
#
# Starts a private Redis (AOF on, appendfsync everysec) and PostgreSQL,
# builds a Release worker, sandbox and generator, connects one agent to a
# Zapier catch hook (and a HubSpot account) served by callsync-sandbox, and
# enqueues jobs straight into Redis in the format ingest writes
# (callsync-benchgen jobs). Zapier is one step, one POST per job. Both
# connections have rate_limit 1000000/1s (the most the limiter accepts):
# the limiter still runs for every request but never makes one wait.
# Scenarios, each with a fresh worker:
#   a.  BENCH_A_JOBS (100000) jobs pre-filled, then the worker started: the
#       drain rate against a sandbox that answers at once (queue overhead);
#   b.  BENCH_B_JOBS (20000) jobs with BENCH_LATENCY_MS (20) of sandbox
#       latency, pre-filled (capacity);
#   bp. the same paced at BENCH_B_RATE (8000) jobs/s into a running worker
#       (enqueue-to-done latency at that offered load);
#   bl. a quarter of them paced at BENCH_B_LIGHT_RATE (2000)/s (latency
#       below capacity);
#   c.  as bp, with 10 % of answers 429 + Retry-After: 1: time until all
#       are done, and duplicate deliveries at the sandbox;
#   h.  BENCH_H_JOBS (2000, 0 skips) HubSpot jobs pre-filled, same latency:
#       contact search + create, then note: 3 requests per job.
# Prints jobs/s, latency, the worker's peak RSS (VmHWM), CPU per job of
# worker, Redis, PostgreSQL (sync logs) and sandbox, and Redis commands per
# job.
#   BENCH_INFLIGHT (512) and BENCH_HOST_CONNS (256): CALLSYNC_WORKER_INFLIGHT
#   and CALLSYNC_WORKER_HOST_CONNS; BENCH_LOG_LEVEL (info: a line per job,
#   as in production); BENCH_TIMEOUT_S (300) per scenario; BENCH_BUILD_DIR
#   (build-bench, configured as Release on first use).
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$CS_ROOT"

A_JOBS=${BENCH_A_JOBS:-100000}
B_JOBS=${BENCH_B_JOBS:-20000}
B_RATE=${BENCH_B_RATE:-8000}
BL_RATE=${BENCH_B_LIGHT_RATE:-2000}
H_JOBS=${BENCH_H_JOBS:-2000}
LATENCY=${BENCH_LATENCY_MS:-20}
INFLIGHT=${BENCH_INFLIGHT:-512}
HOST_CONNS=${BENCH_HOST_CONNS:-256}
LOG_LEVEL=${BENCH_LOG_LEVEL:-info}
TIMEOUT_S=${BENCH_TIMEOUT_S:-300}
BUILD=${BENCH_BUILD_DIR:-$CS_ROOT/build-bench}
FIXTURE=tests/fixtures/retell/call_analyzed.json
HS_TOKEN=pat-na1-bench-0000

cs_ensure_packages
cs_build "$BUILD" -DCMAKE_BUILD_TYPE=Release
bin=$BUILD/bin
dir=$(mktemp -d /tmp/callsync-wbench.XXXXXX)
worker_pid="" sandbox_pid=""
cleanup() {
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null && wait "$sandbox_pid" 2>/dev/null
  cs_stack_down "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cs_stack_up "$dir"
. "$dir/env"
export CALLSYNC_ENCRYPTION_KEYS=$(cs_dev_keys)
export CALLSYNC_LOG_LEVEL=warn
rcli() { redis-cli -p "$CALLSYNC_STACK_REDIS_PORT" "$@"; }
now_ms() { date +%s%3N; }
hz=$(getconf CLK_TCK)
# CPU ticks (user + system) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The same for this stack's PostgreSQL: the postmaster with the children
# it has reaped (the worker's backend ends with the worker), and those
# still running.
pg_ticks() {
  local pm t p
  pm=$(head -n 1 "$dir/pg/data/postmaster.pid")
  t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
  for p in $(pgrep -P "$pm"); do
    t=$((t + $(ticks "$p" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# Microseconds of CPU per job from a tick difference.
per_job() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}'; }

"$bin/callsyncctl" migrate >/dev/null
org=$("$bin/callsyncctl" orgs add "Bench Roofing")
agent=$("$bin/callsyncctl" agents add --org "$org" --name "Bench desk" \
  --retell-agent-id agent_d8a1c0ffee)
sport=$(cs_free_port 18480)
limits='{"rate_limit":"1000000/1s"}'
zap=$("$bin/callsyncctl" connections add --agent "$agent" --type zapier \
  --auth none --webhook-url "http://127.0.0.1:$sport/zapier/hooks/catch/1/bench/" \
  --config "$limits")
hub=$(HS_TOKEN=$HS_TOKEN "$bin/callsyncctl" connections add --agent "$agent" \
  --type hubspot --auth api_key --api-key-env HS_TOKEN --config "$limits")

"$bin/callsync-sandbox" --port "$sport" --hubspot-token "$HS_TOKEN" \
  --hubspot-rate 10000000 >"$dir/sandbox.out" 2>"$dir/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 1 100); do
  grep -q listening "$dir/sandbox.out" 2>/dev/null && break
  sleep 0.05
done
sb() { curl -fsS -X "$1" "http://127.0.0.1:$sport/_sandbox/$2" ${3:+-d "$3"}; }
redis_pid=$(cat "$dir/redis/redis.pid")

start_worker() {
  CALLSYNC_WORKER_INFLIGHT=$INFLIGHT CALLSYNC_WORKER_HOST_CONNS=$HOST_CONNS \
    CALLSYNC_PROVIDER_BASE_URLS="hubspot=http://127.0.0.1:$sport/hubspot" \
    CALLSYNC_LOG_LEVEL=$LOG_LEVEL CALLSYNC_WORKER_CONSUMER="bench-$1" \
    "$bin/callsync-worker" 2>>"$dir/worker.log" &
  worker_pid=$!
}
stop_worker() {
  kill -TERM "$worker_pid"
  wait "$worker_pid" || { echo "worker exited with $?; see $dir/worker.log" >&2; exit 1; }
  worker_pid=""
}
# Until every job of the provider's stream finished (stream and delayed
# set empty); benchgen polls on one connection every 10 ms.
wait_drained() {
  "$bin/callsync-benchgen" wait --redis "$CALLSYNC_REDIS_URL" --provider "$1" \
    --timeout "$TIMEOUT_S" || { echo "see $dir/worker.log" >&2; exit 1; }
}
enqueue() { # provider connection count rate label
  "$bin/callsync-benchgen" jobs --redis "$CALLSYNC_REDIS_URL" --agent "$agent" \
    --org "$org" --connection "$2" --provider "$1" --count "$3" --rate "$4" \
    --out "$dir/$5.ids" "$FIXTURE" 2>>"$dir/benchgen.log"
}
report() { "$bin/callsync-benchgen" report --redis "$CALLSYNC_REDIS_URL" --in "$dir/$1.ids" >"$dir/$1.rep"; }
val() { awk -F= -v k="$2" '$1 == k {print $2}' "$dir/$1.rep"; }
rss() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$worker_pid/status"; }
# Redis commands (those run inside scripts included) and their execution
# time (µs) since the last RESETSTAT, without the benchmark's own: its
# polling, and for a paced run the HSETNX + XADD of each job it enqueued.
redis_cmds() { # jobs enqueued during the count
  rcli INFO commandstats | tr -d '\r' | awk -F'[:=,]' -v enq="$1" '
    /^cmdstat_(xlen|zcard|config|info|ping|hsetnx)/ {next}
    /^cmdstat_xadd/ {x = $3 > enq ? $3 - enq : 0; u += $3 ? $5 * x / $3 : 0; c += x; next}
    /^cmdstat_/ {c += $3; u += $5}
    END {print c + 0, u + 0}'
}
dupes() { # records distinct, for the provider's records
  sb GET "records?provider=$1&type=$2&count=1&distinct=$3" |
    jq -r '"\(.count) \(.distinct)"'
}

declare -A R
# run_scenario label provider connection count rate(0: pre-filled) latency faults
run_scenario() {
  local label=$1 provider=$2 conn=$3 count=$4 rate=$5 lat=$6 rules=$7
  sb POST reset >/dev/null
  sb POST faults "$rules" >/dev/null
  cs_say "$label: $count $provider jobs, ${lat} ms latency, $( [ "$rate" = 0 ] && echo pre-filled || echo "paced at $rate/s")"
  local r0 s0 p0 t0
  if [ "$rate" = 0 ]; then
    enqueue "$provider" "$conn" "$count" 0 "$label"
    rcli CONFIG RESETSTAT >/dev/null
    r0=$(ticks "$redis_pid"); s0=$(ticks "$sandbox_pid"); p0=$(pg_ticks)
    t0=$(now_ms)
    start_worker "$label"
  else
    start_worker "$label"
    sleep 0.5 # connected, groups created, first XREADGROUP waiting
    rcli CONFIG RESETSTAT >/dev/null
    r0=$(ticks "$redis_pid"); s0=$(ticks "$sandbox_pid"); p0=$(pg_ticks)
    t0=$(now_ms)
    enqueue "$provider" "$conn" "$count" "$rate" "$label"
  fi
  wait_drained "$provider"
  local wt rt st pt cmds usec
  wt=$(ticks "$worker_pid"); rt=$(($(ticks "$redis_pid") - r0))
  st=$(($(ticks "$sandbox_pid") - s0))
  read -r cmds usec <<<"$(redis_cmds "$( [ "$rate" = 0 ] && echo 0 || echo "$count")")"
  R[$label.rss]=$(rss)
  stop_worker
  sleep 0.3 # the last sync-log batch
  pt=$(($(pg_ticks) - p0))
  report "$label"
  local fin_last fin_first done
  fin_last=$(val "$label" fin_last_ms); fin_first=$(val "$label" fin_first_ms)
  done=$(val "$label" done)
  R[$label.wall]=$(awk -v a="$t0" -v b="$fin_last" 'BEGIN {printf "%.2f", (b - a) / 1000}')
  R[$label.rate]=$(awk -v n="$done" -v a="$t0" -v b="$fin_last" 'BEGIN {printf "%.0f", n / ((b - a) / 1000)}')
  R[$label.steady]=$(awk -v n="$done" -v a="$fin_first" -v b="$fin_last" 'BEGIN {if (b > a) printf "%.0f", (n - 1) / ((b - a) / 1000); else print "-"}')
  R[$label.done]=$done
  R[$label.dead]=$(val "$label" dead)
  R[$label.unfinished]=$(val "$label" unfinished)
  R[$label.p50]=$(val "$label" p50_ms)
  R[$label.p99]=$(val "$label" p99_ms)
  R[$label.max]=$(val "$label" max_ms)
  R[$label.cpu]="$(per_job "$wt" "$count") / $(per_job "$rt" "$count") / $(per_job "$pt" "$count") / $(per_job "$st" "$count")"
  R[$label.redis]="$(awk -v c="$cmds" -v n="$count" 'BEGIN {printf "%.1f", c / n}') / $(awk -v u="$usec" -v n="$count" 'BEGIN {printf "%.0f", u / n}')"
}

lat_rule() { echo "{\"provider\":\"*\",\"latency_ms\":$1}"; }

run_scenario a zapier "$zap" "$A_JOBS" 0 0 '[]'
read -r a_rec a_dist <<<"$(dupes zapier hooks idempotency_key)"
run_scenario b zapier "$zap" "$B_JOBS" 0 "$LATENCY" "[$(lat_rule "$LATENCY")]"
read -r b_rec b_dist <<<"$(dupes zapier hooks idempotency_key)"
run_scenario bp zapier "$zap" "$B_JOBS" "$B_RATE" "$LATENCY" "[$(lat_rule "$LATENCY")]"
read -r bp_rec bp_dist <<<"$(dupes zapier hooks idempotency_key)"
BL_JOBS=$(( (B_JOBS + 3) / 4 ))
run_scenario bl zapier "$zap" "$BL_JOBS" "$BL_RATE" "$LATENCY" "[$(lat_rule "$LATENCY")]"
read -r bl_rec bl_dist <<<"$(dupes zapier hooks idempotency_key)"
run_scenario c zapier "$zap" "$B_JOBS" "$B_RATE" "$LATENCY" \
  "[{\"provider\":\"zapier\",\"status\":429,\"retry_after_s\":1,\"probability\":0.1,\"latency_ms\":$LATENCY},$(lat_rule "$LATENCY")]"
read -r c_rec c_dist <<<"$(dupes zapier hooks idempotency_key)"
c_429=$(sb GET stats | jq '.providers.zapier.by_status."429" // 0')
if [ "$H_JOBS" -gt 0 ]; then
  run_scenario h hubspot "$hub" "$H_JOBS" 0 "$LATENCY" "[$(lat_rule "$LATENCY")]"
  h_notes=$(sb GET "records?provider=hubspot&type=notes&count=1" | jq .count)
  read -r h_con h_dist <<<"$(dupes hubspot contacts phone)"
  h_req=$(sb GET stats | jq '.providers.hubspot.total')
fi

row() { # label description
  local l=$1
  printf '| %-42s | %6s | %6s | %6s | %6s | %6s | %5s | %-22s | %-10s |\n' "$2" \
    "${R[$l.done]}" "${R[$l.rate]}" "${R[$l.steady]}" "${R[$l.p50]}" \
    "${R[$l.p99]}" "${R[$l.rss]}" "${R[$l.cpu]}" "${R[$l.redis]}"
}
hrow=""
[ "$H_JOBS" -gt 0 ] && hrow=$(row h "h. HubSpot (3 requests), pre-filled, ${LATENCY} ms")
cat <<OUT

callsync-worker benchmark: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average before: $load_before
worker: CALLSYNC_WORKER_INFLIGHT=$INFLIGHT, CALLSYNC_WORKER_HOST_CONNS=$HOST_CONNS, log level $LOG_LEVEL; Redis AOF everysec
connections: rate_limit 1000000/1s (the limiter runs for every request, never waits)
jobs/s: done / (last finished_at - start); start = worker launch (pre-filled) or first enqueue (paced); steady: first to last finish
latency: first_enqueued_at to finished_at, ms; RSS: worker VmHWM, MiB; CPU: µs per job (worker, Redis, PostgreSQL, sandbox)
Redis: commands per job (those run by scripts included) / µs of Redis command time per job

| scenario                                   |   done | jobs/s | steady | p50 ms | p99 ms |   RSS | CPU worker/redis/pg/sb | Redis      |
|--------------------------------------------|-------:|-------:|-------:|-------:|-------:|------:|------------------------|------------|
$(row a "a. Zapier, pre-filled, answers at once")
$(row b "b. Zapier, pre-filled, ${LATENCY} ms latency")
$(row bp "b. Zapier, paced ${B_RATE}/s, ${LATENCY} ms")
$(row bl "b. Zapier, paced ${BL_RATE}/s, ${LATENCY} ms")
$(row c "c. paced ${B_RATE}/s, 10 % 429 + Retry-After 1")
${hrow:+$hrow
}
a: $a_rec hooks for $a_dist distinct jobs; dead ${R[a.dead]}, unfinished ${R[a.unfinished]}; drained in ${R[a.wall]} s
b: hooks/distinct jobs $b_rec/$b_dist (pre-filled, ${R[b.wall]} s), $bp_rec/$bp_dist (paced, ${R[bp.wall]} s), $bl_rec/$bl_dist (light, ${R[bl.wall]} s); dead ${R[b.dead]}/${R[bp.dead]}/${R[bl.dead]}
c: all ${R[c.done]} done ${R[c.wall]} s after the first enqueue (the paced enqueue takes $(awk -v n="$B_JOBS" -v r="$B_RATE" 'BEGIN {printf "%.1f", n / r}') s); $c_429 answers were 429; $c_rec hooks for $c_dist distinct jobs: $((c_rec - c_dist)) duplicates; dead ${R[c.dead]}; max latency ${R[c.max]} ms
OUT
if [ "$H_JOBS" -gt 0 ]; then
  echo "h: $h_req HubSpot requests, $h_con contacts ($h_dist distinct phones), $h_notes notes for ${R[h.done]} jobs; dead ${R[h.dead]}"
fi
