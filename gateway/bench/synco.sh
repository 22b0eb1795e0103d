# Sourced by run.sh: starts Synco's gateway in each configuration the binary supports
# and registers it as a target. Uses: GW_BIN, RUN, MOCK_URL, PIDS, add_target,
# has_flag, free_port, wait_http, log, OUT, ROOT.
#
# Rows:
#   synco-serve     `serve --config`: the plain proxy (no auth, no quota, no metering).
#   synco-sqlite    `standalone`: manifests + SQLite; usage metered to SQLite; plus
#                   authentication and quota when the binary has them (issue 6).
#   synco-postgres  the same with metering in a throwaway Postgres, when the binary
#                   can use Postgres.

# --- plain proxy
cat > "$RUN/gateway.yaml" <<EOF
models:
  - name: bench
    engine:
      kind: external
      url: $MOCK_URL
      timeoutSeconds: 30
      retries: 0
EOF
port=$(free_port)
RUST_LOG=${SYNCO_BENCH_RUST_LOG:-warn} "$GW_BIN" serve --config "$RUN/gateway.yaml" --listen "127.0.0.1:$port" \
  > "$RUN/synco-serve.log" 2>&1 &
serve_pid=$!
PIDS+=($serve_pid)
wait_http "http://127.0.0.1:$port/healthz" 60
add_target synco-serve "http://127.0.0.1:$port" "$serve_pid" "x-bench: synco" \
  "Synco serve --config: proxy only (no authentication, quota or metering)"

# --- standalone: manifests, SQLite
mkdir -p "$RUN/manifests"
for f in 00-cooperative 10-members 20-customer 30-pool 50-allocation; do
  [[ -f $ROOT/crds/examples/$f.yaml ]] && cp "$ROOT/crds/examples/$f.yaml" "$RUN/manifests/"
done
cat > "$RUN/manifests/40-models.yaml" <<EOF
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata:
  name: bench
  namespace: riverside
spec:
  servedName: bench
  engine:
    kind: External
    url: $MOCK_URL
  tokensPerSecondPerReplica: 1000000
  # Each caller's concurrency is its part of this (from the Allocation).
  concurrentRequestsPerReplica: 100000
  capabilities:
    chat: true
    embeddings: false
  access:
    customers: true
EOF

# Authentication / quota flags appear with issue 6; detect them instead of assuming.
SYNCO_FEATURES="metering=sqlite"
SYNCO_AUTH_HDR="x-bench: synco"
SYNCO_EXTRA=()
if [[ -x $ROOT/gateway/bench/synco-auth.sh ]]; then
  # Prints extra flags (one per line) and, on the last line, the request header to send.
  mapfile -t lines < <("$ROOT/gateway/bench/synco-auth.sh" "$GW_BIN" "$RUN")
  if (( ${#lines[@]} > 0 )); then
    SYNCO_AUTH_HDR=${lines[-1]}
    SYNCO_EXTRA=("${lines[@]:0:${#lines[@]}-1}")
    SYNCO_FEATURES="authentication, quota, metering=sqlite"
  fi
fi

start_standalone() { # name data-dir note extra-args...
  local name=$1 dir=$2 note=$3; shift 3
  local port; port=$(free_port)
  mkdir -p "$dir"
  RUST_LOG=${SYNCO_BENCH_RUST_LOG:-warn} "$GW_BIN" standalone --manifests "$RUN/manifests" --data-dir "$dir" \
    --listen "127.0.0.1:$port" "${SYNCO_EXTRA[@]}" "$@" > "$RUN/$name.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  if ! wait_http "http://127.0.0.1:$port/healthz" 120; then
    log "$name did not start:"; tail -20 "$RUN/$name.log" >&2; return 1
  fi
  add_target "$name" "http://127.0.0.1:$port" "$pid" "$SYNCO_AUTH_HDR" "$note"
}
start_standalone synco-sqlite "$RUN/data-sqlite" "Synco standalone: $SYNCO_FEATURES" \
  || echo "synco-sqlite: failed to start (see log)" >> "$OUT/skipped.txt"

# --- Postgres, only when the gateway can use it
PG_FLAG=""
for f in --database-url --db-url --postgres-url --metering-url; do
  if has_flag "$f"; then PG_FLAG=$f; break; fi
done
if [[ -z $PG_FLAG ]]; then
  echo "synco-postgres: this gateway build has no Postgres option yet (standalone --help lists none of --database-url/--db-url/--postgres-url/--metering-url); row pending issue 6" >> "$OUT/skipped.txt"
elif [[ -z $PG_BIN ]]; then
  echo "synco-postgres: no Postgres binaries under /usr/lib/postgresql (apt-get install postgresql)" >> "$OUT/skipped.txt"
else
  start_postgres
  start_standalone synco-postgres "$RUN/data-pg" "Synco standalone: ${SYNCO_FEATURES/sqlite/postgres}" \
    "$PG_FLAG" "$PG_URL" \
    || echo "synco-postgres: failed to start (see log)" >> "$OUT/skipped.txt"
fi
