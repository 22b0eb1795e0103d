#!/usr/bin/env bash
# The soak benchmark: the gateway on Postgres under a steady load for ten minutes,
# streamed and non-streamed requests mixed, through authentication, quota and metering.
#
#     gateway/bench/soak.sh
#
# Prints, minute by minute, the requests served, the p99 latency of each kind and the
# gateway's resident memory; then stops the gateway (SIGTERM, so its usage buffer is
# flushed) and checks that the usage records equal the requests served. Loopback
# only; the load stops by itself (oha runs for a fixed time); every process started
# here is killed on exit.
#
# Knobs (environment):
#   SOAK_MINUTES=10        minutes of load
#   SOAK_RATE=1000         requests per second in all, half of them streamed
#   BENCH_LATENCY_MS=10    the mock upstream's fixed latency
#   BENCH_GATEWAY_BIN=PATH use this gateway binary (else a release build)
#   SYNCO_BENCH_CACHE=~/.cache/synco-bench  where oha and the mock are kept
#   CARGO_TARGET_DIR=<repo>/target-bench
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CACHE=${SYNCO_BENCH_CACHE:-$HOME/.cache/synco-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
MINUTES=${SOAK_MINUTES:-10}
RATE=${SOAK_RATE:-1000}
LATENCY_MS=${BENCH_LATENCY_MS:-10}
mkdir -p "$CACHE"
RUN=$(mktemp -d /tmp/synco-soak.XXXXXX)
chmod 755 "$RUN"
log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

source "$ROOT/gateway/bench/lib.sh"

# ---------------------------------------------------------------- tools
bench_tools
[[ -n $PG_BIN ]] || { log "no Postgres under /usr/lib/postgresql (apt-get install postgresql)"; exit 1; }

# ---------------------------------------------------------------- mock, Postgres, gateway
start_mock "$LATENCY_MS"

start_postgres
DB_URL=$PG_URL

# The benchmark's co-op (the example co-op with a fast external model) and its caller.
mkdir -p "$RUN/manifests"
for f in 00-cooperative 10-members 20-customer 30-pool 50-allocation; do
  cp "$ROOT/crds/examples/$f.yaml" "$RUN/manifests/"
done
cat > "$RUN/manifests/40-models.yaml" <<EOF
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {name: bench, namespace: riverside}
spec:
  servedName: bench
  engine: {kind: External, url: "$MOCK_URL"}
  tokensPerSecondPerReplica: 1000000
  concurrentRequestsPerReplica: 100000
  capabilities: {chat: true, embeddings: false}
  access: {customers: true}
EOF
mapfile -t AUTH < <("$ROOT/gateway/bench/synco-auth.sh" "$GW_BIN" "$RUN")
HDR=${AUTH[-1]}
PORT=$(free_port)
RUST_LOG=warn "$GW_BIN" standalone --manifests "$RUN/manifests" --data-dir "$RUN/data" \
  --database-url "$DB_URL" --listen "127.0.0.1:$PORT" "${AUTH[@]:0:${#AUTH[@]}-1}" \
  > "$RUN/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_http "http://127.0.0.1:$PORT/healthz"
URL=http://127.0.0.1:$PORT/v1/chat/completions
body() { # stream?
  printf '{"model":"bench","messages":[{"role":"user","content":"Hello, soak"}],"max_tokens":16,"stream":%s}' "$1"
}
rss_mib() { awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$GW_PID/status"; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc: $(nproc); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "gateway: $GW_BIN; $RATE req/s (half streamed) for $MINUTES min; mock latency ${LATENCY_MS} ms; Postgres $("$PG_BIN/postgres" --version | awk '{print $3}')"
} >&2
log "RSS before load: $(rss_mib) MiB"

# ---------------------------------------------------------------- load, a minute at a time
HALF=$((RATE / 2))
echo "| minute | served (200) | non-stream p99 (ms) | stream p99 (ms) | errors | cut at the minute's end | RSS (MiB) |"
echo "|---|---|---|---|---|---|---|"
TOTAL=0
CUT=0
ERRORS=0
for m in $(seq 1 "$MINUTES"); do
  LOAD=()
  for mode in false true; do
    timeout 120 "$OHA" --no-tui --output-format json -z 60s -q "$HALF" -c 64 -t 30s -m POST \
      -T application/json -H "$HDR" -d "$(body $mode)" "$URL" > "$RUN/oha-$m-$mode.json" 2> "$RUN/oha-$m-$mode.err" &
    LOAD+=($!)
  done
  wait "${LOAD[@]}" || log "oha exited with an error in minute $m"
  row=$(python3 - "$RUN/oha-$m-false.json" "$RUN/oha-$m-true.json" <<'PY'
import json, sys
served = errors = cut = 0
p99 = []
for path in sys.argv[1:]:
    r = json.load(open(path))
    codes = r.get("statusCodeDistribution", {})
    served += int(codes.get("200", 0))
    errors += sum(int(v) for k, v in codes.items() if k != "200")
    for why, n in r.get("errorDistribution", {}).items():
        # oha gives up on what is still in flight when its minute ends: the gateway
        # still serves (and meters) those, so they are counted apart, not as errors.
        if why == "aborted due to deadline":
            cut += int(n)
        else:
            errors += int(n)
    p99.append(r["latencyPercentiles"]["p99"] * 1000)
print(served, f"{p99[0]:.1f}", f"{p99[1]:.1f}", errors, cut)
PY
)
  read -r served p99c p99s errors cut <<< "$row"
  TOTAL=$((TOTAL + served))
  CUT=$((CUT + cut))
  ERRORS=$((ERRORS + errors))
  echo "| $m | $served | $p99c | $p99s | $errors | $cut | $(rss_mib) |"
done

# ---------------------------------------------------------------- nothing lost
kill -TERM "$GW_PID"
for _ in $(seq 1 600); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
count() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U synco -d synco -tAc "SELECT count(*) FROM usage_records $1"; }
COMPLETED=$(count "WHERE outcome = 'completed'")
ALL=$(count "")
echo
echo "sent: $((TOTAL + CUT + ERRORS)) (served $TOTAL, cut by the load generator at a minute's end $CUT, errors $ERRORS)"
echo "usage records: $ALL ($COMPLETED completed)"
# Every request answered is metered as completed; the requests oha stopped waiting for at
# a minute's end may have been served anyway (completed), cut short (another outcome), or
# never sent (no record): so the completed records are at least the requests served, and
# all records at most the requests sent. (oha names no request, so this is as exact as
# the client side allows: within the few cut at each minute's end.)
if (( COMPLETED < TOTAL || ALL > TOTAL + CUT + ERRORS )); then
  echo "LOST: the records do not match the requests" >&2
  tail -20 "$RUN/gateway.log" >&2
  exit 1
fi
echo "nothing lost"
