#!/usr/bin/env bash
# Synco's comparison benchmark: one command, from a clean clone.
#
#     gateway/bench/run.sh
#
# Builds the gateway (release) and a fixed-latency mock OpenAI upstream (Go stdlib), installs `oha`
# (crates.io) and LiteLLM's proxy + matplotlib (PyPI, into a cached venv), starts on
# 127.0.0.1 only: the mock, Synco's gateway in each configuration, LiteLLM's proxy
# and (when the gateway can use it) a throwaway Postgres; then drives each target with
# oha at fixed rates and at maximum throughput, interleaving targets at each point, and
# prints the table. Then the governance set: the policies criterion benches (1M-ballot
# tally, 10k-caller solver) and the operator's proposal-close -> quotas benchmark.
#
# Every load point is bounded in time (BENCH_SECONDS, default 5 s) and by oha's
# per-request timeout; every process started here is killed on exit.
#
# Knobs (environment):
#   BENCH_SECONDS=5          seconds per load point
#   BENCH_RATES="100 1000 5000 max"
#   BENCH_LATENCY_MS=10      the mock's fixed latency
#   BENCH_MODES="chat stream"
#   BENCH_TARGETS=           subset of: direct synco-serve synco-sqlite synco-postgres litellm
#   BENCH_GOVERNANCE=1       0 skips the policies and operator benches
#   BENCH_OPERATOR=1         0 skips the operator benchmark (needs the e2e control plane)
#   BENCH_OPERATOR_PROFILE=release  (or dev: reuses a debug e2e build; slower operator)
#   BENCH_GATEWAY_BIN=PATH   use this gateway binary instead of building one (release)
#   BENCH_PROFILE=NAME       label for that binary's build profile in the report
#   BENCH_QUICK=1            smoke mode: 1 s points, rates "100 max", no governance
#   SYNCO_BENCH_CACHE=~/.cache/synco-bench  where oha and the venv are kept
#   CARGO_TARGET_DIR=<repo>/target-bench
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CACHE=${SYNCO_BENCH_CACHE:-$HOME/.cache/synco-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
SECONDS_PER_POINT=${BENCH_SECONDS:-5}
RATES=${BENCH_RATES:-"100 1000 5000 max"}
LATENCY_MS=${BENCH_LATENCY_MS:-10}
MODES=${BENCH_MODES:-"chat stream"}
GOVERNANCE=${BENCH_GOVERNANCE:-1}
OPERATOR=${BENCH_OPERATOR:-1}
OPERATOR_PROFILE=${BENCH_OPERATOR_PROFILE:-release}
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
  SECONDS_PER_POINT=1; RATES="100 max"; GOVERNANCE=0
fi
LITELLM_VERSION=${BENCH_LITELLM_VERSION:-1.106.2}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-results/$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT" "$CACHE"
RUN=$(mktemp -d /tmp/synco-bench.XXXXXX)
chmod 755 "$RUN"
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

source "$ROOT/gateway/bench/lib.sh"

# ---------------------------------------------------------------- tools
bench_tools
VENV=$CACHE/litellm-venv
if [[ ! -x $VENV/bin/litellm ]] || ! "$VENV/bin/python" -c 'import matplotlib, prisma' 2>/dev/null; then
  log "installing litellm[proxy]==$LITELLM_VERSION and matplotlib into $VENV"
  python3 -m venv "$VENV"
  # prisma (the Python package only; its engines are never generated or downloaded): LiteLLM's
  # auth error path imports it, and without it a request with no key gets a 500, not a 401.
  "$VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" prisma matplotlib
fi
PY=$VENV/bin/python

# ---------------------------------------------------------------- machine
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "synco commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "oha: $($OHA --version)"
  echo "litellm: $("$PY" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
  echo "rustc: $(rustc --version); gateway: $GW_BIN (profile: $PROFILE)"
  echo "seconds per point: $SECONDS_PER_POINT; mock latency: ${LATENCY_MS} ms"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- mock upstream
start_mock "$LATENCY_MS"

declare -A URL PID HDR NOTE
add_target() { # name url pid header note
  URL[$1]=$2; PID[$1]=$3; HDR[$1]=$4; NOTE[$1]=$5; TARGETS+=("$1")
}
TARGETS=()
add_target direct "http://127.0.0.1:$MOCK_PORT" "${PIDS[0]}" "x-bench: direct" "the mock upstream called directly"

# ---------------------------------------------------------------- Synco's gateway
# What the binary can do decides which Synco rows run (auth/quota/metering land in
# issue 6): we read its --help rather than guessing.
GW_HELP_STANDALONE=$("$GW_BIN" standalone --help 2>&1 || true)
has_flag() { grep -q -- "$1" <<<"$GW_HELP_STANDALONE"; }
source "$ROOT/gateway/bench/synco.sh"

# ---------------------------------------------------------------- LiteLLM
source "$ROOT/gateway/bench/litellm.sh"

if [[ -n ${BENCH_TARGETS:-} ]]; then
  keep=(); for t in "${TARGETS[@]}"; do [[ " $BENCH_TARGETS " == *" $t "* ]] && keep+=("$t"); done
  TARGETS=("${keep[@]}")
fi
for t in "${TARGETS[@]}"; do
  printf '%s\t%s\t%s\n' "$t" "${PID[$t]}" "${NOTE[$t]}" >> "$OUT/targets.tsv"
done

# ---------------------------------------------------------------- load
rss_sampler() { # pid outfile: max VmRSS (kB) of the process and its children while running
  local pid=$1 out=$2 max=0
  while [[ -e $RUN/sampling ]]; do
    local sum=0
    for p in $pid $(pgrep -P "$pid" 2>/dev/null); do
      local r; r=$(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
      sum=$((sum + ${r:-0}))
    done
    (( sum > max )) && max=$sum
    sleep 0.2
  done
  echo "$max" > "$out"
}

body() { # mode
  if [[ $1 == stream ]]; then
    echo '{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}'
  else
    echo '{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'
  fi
}

# Warm every target (connections, JIT-free but caches, LiteLLM's first-call imports).
for t in "${TARGETS[@]}"; do
  for mode in $MODES; do
    "$OHA" --no-tui -n 50 -c 4 -t 10s -m POST -T application/json -H "${HDR[$t]}" \
      -d "$(body "$mode")" "${URL[$t]}/v1/chat/completions" > /dev/null 2>&1 || true
  done
done

for mode in $MODES; do
  for rate in $RATES; do
    for t in "${TARGETS[@]}"; do
      f=$OUT/oha-$t-$mode-$rate
      if [[ $rate == max ]]; then
        load=(-c 64)
      else
        # open loop at a fixed rate; enough connections for 10x the mock's latency
        load=(-q "$rate" -c 256 --latency-correction)
      fi
      log "$mode $t @ $rate/s for ${SECONDS_PER_POINT}s"
      touch "$RUN/sampling"
      rss_sampler "${PID[$t]}" "$f.rss" &
      sampler=$!
      timeout $((SECONDS_PER_POINT + 30)) "$OHA" --no-tui --output-format json -z "${SECONDS_PER_POINT}s" \
        "${load[@]}" -t 10s -m POST -T application/json -H "${HDR[$t]}" \
        -d "$(body "$mode")" "${URL[$t]}/v1/chat/completions" > "$f.json" 2> "$f.err" || log "oha exited $? for $t $mode $rate"
      rm -f "$RUN/sampling"
      wait "$sampler" || true
      awk '/VmHWM/{print $2}' "/proc/${PID[$t]}/status" > "$f.hwm" 2>/dev/null || true
    done
  done
done

# ---------------------------------------------------------------- governance
if [[ $GOVERNANCE == 1 ]]; then
  source "$ROOT/gateway/bench/governance.sh"
fi

# ---------------------------------------------------------------- report
cleanup_targets() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
cleanup_targets
"$PY" "$ROOT/gateway/bench/report.py" "$OUT" --plot "$ROOT/docs/benchmarks-latency.png" | tee "$OUT/table.md"
log "results in $OUT (table.md, oha-*.json)"
