#!/usr/bin/env bash
# `make api-fuzz`: schemathesis (every check) against `berth serve` and infra/openapi.yaml.
# The server must answer no 5xx, and must not refuse a request the description says is valid.
# API_FUZZ_EXAMPLES (default 20) bounds the examples per operation; API_FUZZ_SEED fixes the
# run (a random seed otherwise); API_FUZZ_BERTH names the
# berth binary (default target/debug/berth); API_FUZZ_WORKERS (default 1) how many requests
# schemathesis has in flight (2 met a hypothesis error shared between its threads, "AST
# constructor recursion depth mismatch"). tests/tests/api_fuzz.rs runs it with few examples.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
berth=${API_FUZZ_BERTH:-$root/target/debug/berth}
st="$root/.venv/bin/st"
examples=${API_FUZZ_EXAMPLES:-20}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"

cleanup() {
  [ -n "${serve:-}" ] && kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The registry's addresses are fixed, so the hooks can write images in it (no registry runs:
# publish checks fail later, in the background). A private address makes registry_endpoint
# private valid, as the description allows it.
registry=127.0.0.1:5000
env -u BERTH_STORE_URL -u BERTH_QUEUE_URL -u BERTH_ACCOUNT_KEY_FILE \
  BERTH_REGISTRY_HOST="$registry" BERTH_REGISTRY_PRIVATE_HOST=10.0.0.1:5000 \
  BERTH_LOG_FORMAT=json "$berth" serve --data-dir "$work/data" --listen "127.0.0.1:$port" 2> "$work/serve.log" &
serve=$!
for _ in $(seq 1 100); do
  curl -fsS "$url/healthz" > /dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$url/healthz" > /dev/null || { echo "berth serve did not start:"; tail -20 "$work/serve.log"; exit 1; }
token=$("$berth" dev-token --account acme --data-dir "$work/data")

# Reports (and schemathesis' and hypothesis' caches) go to $work; the summary (failures by
# check and operation) is what counts. Custom string formats and cross-field rules come from
# scripts/api_fuzz_hooks.py; statuses from scripts/api-fuzz.toml.
cd "$work"
API_FUZZ_ACCOUNT=acme API_FUZZ_REGISTRY="$registry" PYTHONPATH="$root/scripts" SCHEMATHESIS_HOOKS=api_fuzz_hooks \
  "$st" --config-file "$root/scripts/api-fuzz.toml" run "$root/infra/openapi.yaml" \
  --url "$url" \
  --checks all \
  --header "Authorization: Bearer $token" \
  --max-examples "$examples" \
  --workers "${API_FUZZ_WORKERS:-1}" \
  ${API_FUZZ_SEED:+--seed "$API_FUZZ_SEED"} \
  --no-color \
  --suppress-health-check all
