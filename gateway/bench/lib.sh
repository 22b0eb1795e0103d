#!/usr/bin/env bash
# Helpers shared by the benchmark scripts (run.sh and what it sources, soak.sh).
# Sourced, not run, after the caller has set ROOT, CACHE, CARGO_TARGET_DIR and RUN (a
# scratch folder) and defined log(). Every process started goes in PIDS; on exit they
# are stopped, the throwaway Postgres too, and RUN is removed.

PIDS=()
PG_DATA=""
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  if [[ -n $PG_DATA ]]; then as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1; fi
  rm -rf "$RUN"
}
trap cleanup EXIT

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

# The tools: GW_BIN (BENCH_GATEWAY_BIN, else a release build) and its PROFILE, the
# mock upstream (Go standard library only) as MOCK_BIN, and oha (crates.io) as OHA.
bench_tools() {
  if [[ -n ${BENCH_GATEWAY_BIN:-} ]]; then
    GW_BIN=$BENCH_GATEWAY_BIN   # a gateway binary built elsewhere (say which profile in the docs)
    PROFILE=${BENCH_PROFILE:-given}
  else
    PROFILE=release
    log "building synco-gateway (release, $CARGO_TARGET_DIR)"
    cargo build --release -q -p synco-gateway --bin synco-gateway
    GW_BIN=$CARGO_TARGET_DIR/release/synco-gateway
  fi
  log "building the mock upstream (Go standard library only)"
  MOCK_BIN=$CACHE/bench-mock
  (cd "$ROOT/gateway/bench/mock" && go build -o "$MOCK_BIN" .)
  OHA=$CACHE/cargo/bin/oha
  if [[ ! -x $OHA ]]; then
    log "installing oha from crates.io into $CACHE/cargo"
    cargo install -q oha --locked --root "$CACHE/cargo"
  fi
}

# The mock upstream on a free loopback port with a fixed latency: start_mock MS; sets
# MOCK_PORT and MOCK_URL (its /v1).
start_mock() {
  MOCK_PORT=$(free_port)
  "$MOCK_BIN" -listen "127.0.0.1:$MOCK_PORT" -latency-ms "$1" > "$RUN/mock.log" 2>&1 &
  PIDS+=($!)
  MOCK_URL=http://127.0.0.1:$MOCK_PORT/v1
  wait_http "$MOCK_URL/models" 30
}
