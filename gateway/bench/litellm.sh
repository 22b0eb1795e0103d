# Sourced by run.sh: starts LiteLLM's proxy (from the cached venv) in front of the same
# mock, with a master key (authentication on) and a proxy-wide budget with spend
# tracking, and registers it as the `litellm` target. Uses: VENV, RUN, MOCK_URL, PIDS,
# add_target, free_port, wait_http, log, OUT.
#
# What LiteLLM cannot do here: virtual keys and per-key budgets need its Postgres
# database through Prisma, and `prisma generate` downloads engine binaries from a host
# this machine cannot reach. So this row runs without a database: master-key
# authentication on every request, per-request cost calculation from the model's
# per-token prices (its spend-tracking callbacks run), and a proxy-wide
# `max_budget`/`budget_duration` in the config -- which LiteLLM 1.106.2 accepts but,
# with no database, does NOT enforce (proxy_server.py: warn_budget_without_db, "the
# budget will NOT be enforced and requests will never be blocked"). See
# docs/benchmarks.md.
LITELLM_MASTER_KEY=sk-bench-master-key
cat > "$RUN/litellm.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: $MOCK_URL
      api_key: sk-mock-upstream
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: $LITELLM_MASTER_KEY
litellm_settings:
  max_budget: 1000000
  budget_duration: 30d
  telemetry: false
  drop_params: true
EOF
port=$(free_port)
# No internet: use the cost map shipped in the package instead of fetching it.
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR LITELLM_TELEMETRY=False \
  "$VENV/bin/litellm" --config "$RUN/litellm.yaml" --host 127.0.0.1 --port "$port" --num_workers 1 \
  > "$RUN/litellm.log" 2>&1 &
litellm_pid=$!
PIDS+=($litellm_pid)
if wait_http "http://127.0.0.1:$port/health/liveliness" 180 "Authorization: Bearer $LITELLM_MASTER_KEY"; then
  add_target litellm "http://127.0.0.1:$port" "$litellm_pid" "Authorization: Bearer $LITELLM_MASTER_KEY" \
    "LiteLLM proxy $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))'): master-key auth, cost tracking, proxy max_budget configured but not enforced without a DB; no virtual keys (need Prisma engines, unreachable)"
  cp "$RUN/litellm.yaml" "$OUT/litellm.yaml"
else
  log "LiteLLM did not start:"; tail -30 "$RUN/litellm.log" >&2
  echo "litellm: did not start; last log lines: $(tail -5 "$RUN/litellm.log" | tr '\n' ' ')" >> "$OUT/skipped.txt"
fi
