# Sourced by run.sh: the governance path.
#   1. policies' criterion benches: tally of 1,000,000 ballots (three methods) and the
#      allocation solver for 10,000 callers (policies/BENCHMARKS.md describes the inputs).
#   2. the operator's time from a proposal's close to the new quotas in force
#      (e2e/tests/operator_bench.rs: 1,000 members and votes, a real API server started
#      on loopback by the e2e harness).
# Output goes to $OUT/policies.txt and $OUT/operator.txt; report.py reads them.
# Uses: OUT, ROOT, OPERATOR, OPERATOR_PROFILE, log.
POLICIES_TARGET_DIR=${BENCH_POLICIES_TARGET_DIR:-$CARGO_TARGET_DIR}
log "policies benches (criterion; CARGO_TARGET_DIR=$POLICIES_TARGET_DIR)"
if ! CARGO_TARGET_DIR=$POLICIES_TARGET_DIR timeout 1200 cargo bench -q -p synco-policies --bench tally --bench solver -- --noplot \
  > "$OUT/policies.txt" 2>&1; then
  log "policies benches failed; see $OUT/policies.txt"
fi

if [[ $OPERATOR == 1 ]]; then
  E2E_TARGET_DIR=${BENCH_E2E_TARGET_DIR:-$CARGO_TARGET_DIR}
  profile=(--release)
  [[ $OPERATOR_PROFILE == dev ]] && profile=()
  log "operator benchmark (profile $OPERATOR_PROFILE; CARGO_TARGET_DIR=$E2E_TARGET_DIR)"
  echo "profile: $OPERATOR_PROFILE" > "$OUT/operator.txt"
  if ! CARGO_TARGET_DIR=$E2E_TARGET_DIR timeout 1500 cargo test -q -p synco-e2e "${profile[@]}" \
    --test operator_bench -- --ignored --nocapture >> "$OUT/operator.txt" 2>&1; then
    log "operator benchmark failed; see $OUT/operator.txt"
  fi
else
  echo "skipped (BENCH_OPERATOR=0)" > "$OUT/operator.txt"
fi
