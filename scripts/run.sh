#!/usr/bin/env bash
# `make run`: berth serve (local store, in-process queue) plus the Debian docker-registry
# using Berth as its token server, on loopback. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${BERTH_DATA_DIR:-berth-data}"
LISTEN="${BERTH_LISTEN:-127.0.0.1:8080}"
REGISTRY="${BERTH_REGISTRY_HOST:-127.0.0.1:5000}"
BERTH=target/debug/berth
mkdir -p "$DATA"
export BERTH_REGISTRY_HOST="$REGISTRY"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31mfailed: %s\033[0m\n  see %s\n' "$1" "$2" >&2; exit 1; }
port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "starting berth serve on http://$LISTEN (log: $DATA/berth.log)"
port_busy "$LISTEN" && die "$LISTEN is already in use (another make run?)" "$DATA/berth.log"
BERTH_LOG_FORMAT=json "$BERTH" serve --data-dir "$DATA" --listen "$LISTEN" >"$DATA/berth.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$LISTEN/healthz" >/dev/null || die "berth serve did not become healthy" "$DATA/berth.log"

step "starting docker-registry on $REGISTRY with Berth as its token server (log: $DATA/registry.log)"
port_busy "$REGISTRY" && die "$REGISTRY is already in use" "$DATA/registry.log"
"$BERTH" registry-config --listen "$REGISTRY" --berth-url "http://$LISTEN" --storage "$DATA/registry" --data-dir "$DATA" >"$DATA/registry.yml"
docker-registry serve "$DATA/registry.yml" >"$DATA/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do port_busy "$REGISTRY" && break; sleep 0.1; done
port_busy "$REGISTRY" || die "docker-registry did not start" "$DATA/registry.log"

TOKEN=$("$BERTH" dev-token --account demo --data-dir "$DATA")
cat <<TXT

Berth is up.
  API:       http://$LISTEN   (GET /healthz)
  registry:  $REGISTRY  (token auth by Berth)

Try, as provider "demo":
  export BERTH_URL=http://$LISTEN BERTH_TOKEN=$TOKEN
  $BERTH credentials push | docker login --username demo --password-stdin $REGISTRY
  $BERTH credentials pull --write-docker-config /tmp/demo-docker

Ctrl-C stops everything.
TXT
wait -n "${pids[@]}"
die "a component stopped" "$DATA/berth.log and $DATA/registry.log"
