#!/usr/bin/env bash
# Sourced output for synco.sh: authentication and quota for the standalone rows.
#
#     synco-auth.sh GW_BIN RUN_DIR
#
# Prints the gateway flags (one per line) and, last, the request header: every
# request carries an HS256 JWT for the member bakery-coop, so the gateway verifies a
# token, resolves the member, applies its rate limit, reserves its worst case from the
# monthly budget (leased from the database) and meters the request, on every call.
# The model's concurrency (in synco.sh) and the engine slots are raised so that the benchmark's load, not a limit
# of the example co-op, decides the queueing; the limits are still enforced.
set -euo pipefail
gw=$1
"$gw" standalone --help | grep -q -- '--jwt-hs256-secret' || exit 0
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
token=$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"sub": "bakery-coop", "exp": int(time.time()) + 86400}).encode())
signature = hmac.new(sys.argv[1].encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
PY
)
printf '%s\n' --jwt-hs256-secret "$secret" --engine-slots 100000 \
  "authorization: Bearer $token"
