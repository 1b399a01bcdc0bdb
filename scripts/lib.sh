#!/usr/bin/env bash
# Shared by scripts/test, scripts/demo, scripts/stack and the benchmarks:
# install what is missing, build, and run a private Redis and PostgreSQL on
# loopback under a scratch folder.
set -euo pipefail

CS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CS_DEB_PACKAGES=(build-essential cmake pkg-config libhiredis-dev
  libcurl4-openssl-dev libjansson-dev libpq-dev libev-dev libcriterion-dev
  libssl-dev libhttp-parser-dev redis-server postgresql postgresql-client
  wrk curl ca-certificates openssl jq)

cs_say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Install the Debian packages that are not installed yet.
cs_ensure_packages() {
  local missing=() p
  for p in "${CS_DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  cs_say "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Keep the packages' own services from starting; we run our own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    CS_POLICY_RC_ADDED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
  if [ "${CS_POLICY_RC_ADDED:-}" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
}

# cs_build DIR [cmake args...]: configure once and build everything.
cs_build() {
  local dir=$1; shift
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$CS_ROOT" -B "$dir" "$@" >/dev/null
  fi
  cmake --build "$dir" -j"$(nproc)" >&2
}

# A TCP port on 127.0.0.1 that nothing listens on, from $1 upwards.
cs_free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

cs_pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || { echo "PostgreSQL server binaries not found" >&2; return 1; }
  echo "$d"
}

# Run a command as the PostgreSQL account: PostgreSQL refuses to run as root.
cs_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# cs_stack_up DIR: start Redis (AOF on, appendfsync everysec) and
# PostgreSQL under DIR and write DIR/env with the CALLSYNC_* variables.
cs_stack_up() {
  local dir=$1
  mkdir -p "$dir/redis"
  chmod 755 "$dir"
  local rport pport pgbin
  rport=$(cs_free_port "${CALLSYNC_STACK_REDIS_PORT:-6391}")
  redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir/redis" \
    --appendonly yes --appendfsync everysec --save "" --daemonize yes \
    --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" \
    --protected-mode yes
  pgbin=$(cs_pg_bin)
  pport=$(cs_free_port "${CALLSYNC_STACK_PG_PORT:-5441}")
  mkdir -p "$dir/pg"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/pg"
  cs_as_pg "$pgbin/initdb" -D "$dir/pg/data" -U callsync -A trust \
    --encoding UTF8 --locale C >"$dir/pg/initdb.log" 2>&1
  cs_as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/pg.log" -w -t 60 \
    -o "-p $pport -c listen_addresses=127.0.0.1 -k $dir/pg -c fsync=on \
        -c max_connections=200 -c shared_buffers=128MB" start >/dev/null
  "$pgbin/psql" -h 127.0.0.1 -p "$pport" -U callsync -d postgres -qAt \
    -c "CREATE DATABASE callsync" >/dev/null
  local i
  for i in $(seq 1 50); do
    redis-cli -p "$rport" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  cat >"$dir/env" <<ENV
export CALLSYNC_REDIS_URL=redis://127.0.0.1:$rport/0
export CALLSYNC_DATABASE_URL=postgresql://callsync@127.0.0.1:$pport/callsync
export CALLSYNC_STACK_DIR=$dir
export CALLSYNC_STACK_REDIS_PORT=$rport
export CALLSYNC_STACK_PG_PORT=$pport
ENV
}

# cs_stack_down DIR: stop what cs_stack_up started.
cs_stack_down() {
  local dir=$1 pgbin
  if [ -f "$dir/redis/redis.pid" ]; then
    kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true
  fi
  if [ -d "$dir/pg/data" ] && pgbin=$(cs_pg_bin); then
    cs_as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# A fresh AES-256-GCM keyring for local runs.
cs_dev_keys() {
  echo "dev1:$(head -c 32 /dev/urandom | base64 -w0)"
}
