#!/usr/bin/env bash
# Helpers shared by the benchmark scripts (run.sh and what it sources, soak.sh).
# Sourced, not run; the caller sets RUN (a scratch folder), defines log() and keeps the
# PIDS array and PG_DATA for its cleanup.

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until `url` answers 2xx: wait_http URL [SECONDS=60] [HEADER].
wait_http() {
  local url=$1 secs=${2:-60} hdr=${3:-x-bench: 1}
  for _ in $(seq 1 $((secs * 10))); do
    if curl -fsS -o /dev/null -H "$hdr" "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "timed out waiting for $url"; return 1
}

# Debian's newest Postgres binaries, if any.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)

# Runs a Postgres binary as `nobody` when we are root (initdb refuses root).
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u nobody -- "$@"; else "$@"; fi; }

# A throwaway Postgres in $RUN/pg on a free loopback port, fsync on; sets PG_DATA,
# PG_PORT and PG_URL (database `synco`, user `synco`, trust on loopback).
start_postgres() {
  PG_DATA=$RUN/pg
  mkdir -p "$PG_DATA" && chown nobody "$PG_DATA" 2>/dev/null || true
  PG_PORT=$(free_port)
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U synco --auth=trust -E UTF8 > "$RUN/initdb.log" 2>&1
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DATA -c fsync=on -c max_connections=200" start > /dev/null
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U synco synco
  PG_URL=postgres://synco@127.0.0.1:$PG_PORT/synco
}
