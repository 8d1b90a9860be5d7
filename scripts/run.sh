#!/usr/bin/env bash
# `make run`: Berth's whole job on the embedded default, as a newcomer sees it.
#
# Starts berth serve (local store, in-process queue), the Debian docker-registry with Berth as
# its token server and one berth-agent, then walks the seed's flow: push an image with a push
# key, publish it as a package, render the seed's ACK template, release the image to the
# agent's host with the seed's start/stop scripts, and curl /hello. Then it leaves everything
# running until Ctrl-C, which stops it all and removes the demo container.
#
#   scripts/run.sh           interactive (make run)
#   scripts/run.sh --check   the same flow, checked step by step, then stopped (make test)
#
# Every run starts from a clean demo state (the data directory's store, queue and registry
# storage are removed; its keys are kept, so dev tokens stay valid).
set -euo pipefail
cd "$(dirname "$0")/.."

CHECK=false
[ "${1:-}" = "--check" ] && CHECK=true

DATA="${BERTH_DATA_DIR:-berth-data}"
LISTEN="${BERTH_LISTEN:-127.0.0.1:9080}"
REGISTRY="${BERTH_REGISTRY_HOST:-127.0.0.1:5000}"
APP_PORT="${BERTH_DEMO_PORT:-8080}"
CONTAINER="${BERTH_DEMO_CONTAINER:-berth-demo}"
ACCOUNT=demo
BERTH="$PWD/target/debug/berth"
AGENT="$PWD/target/debug/berth-agent"
LOGS="$DATA/logs"
DEMO="$DATA/demo"

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
current_step="start-up"
current_log="$LOGS/berth.log"
step() {
  current_step="$1"; current_log="$2"; shift 2
  printf '\n'; bold "==> $current_step: $*"
}
info() { printf '    %s\n' "$*"; }
die() {
  printf '\033[31mfailed at step "%s": %s\033[0m\n  read %s\n' "$current_step" "$1" "$current_log" >&2
  exit 1
}
port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_port() { for _ in $(seq 150); do port_busy "$1" && return 0; sleep 0.1; done; return 1; }
json() { python3 -c "import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split('.'):
    v = v[int(k)] if k.isdigit() else v[k]
print(v if not isinstance(v,(dict,list)) else json.dumps(v))" "$1"; }
api() { # METHOD PATH [JSON]: the API as the demo provider; fails on a problem
  local out
  out=$(curl -sS -X "$1" "http://$LISTEN$2" -H "authorization: Bearer $BERTH_TOKEN" \
        -H 'content-type: application/json' ${3:+--data "$3"} -w '\n%{http_code}') || die "cannot reach Berth"
  local code="${out##*$'\n'}" body="${out%$'\n'*}"
  [ "${code:0:1}" = 2 ] || die "$1 $2 answered $code: $body"
  printf '%s' "$body"
}

pids=()
cleanup() {
  trap - EXIT INT TERM
  docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in docker docker-registry curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (make deps installs what Berth needs; Docker must be running)"
done
[ -x /bin/busybox ] || die "/bin/busybox is missing (busybox-static; make deps installs it)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (is it running, and may this user use it?)"

rm -rf "$DATA/store" "$DATA/queue" "$DATA/registry" "$DATA/agent" "$DEMO" "$LOGS"
mkdir -p "$LOGS" "$DEMO"
docker rm -f "$CONTAINER" >/dev/null 2>&1 || true

step "start-up" "$LOGS/berth.log" "berth serve on http://$LISTEN, docker-registry on $REGISTRY"
for address in "$LISTEN" "$REGISTRY" "127.0.0.1:$APP_PORT"; do
  port_busy "$address" && die "$address is already in use (another make run? set BERTH_LISTEN, BERTH_REGISTRY_HOST or BERTH_DEMO_PORT)"
done
BERTH_LOG_FORMAT=json BERTH_REGISTRY_HOST="$REGISTRY" "$BERTH" serve --data-dir "$DATA" --listen "$LISTEN" >"$LOGS/berth.log" 2>&1 &
pids+=($!)
wait_port "$LISTEN" || die "berth serve did not start"
curl -fsS "http://$LISTEN/healthz" >/dev/null || die "berth serve is not healthy"
"$BERTH" registry-config --listen "$REGISTRY" --berth-url "http://$LISTEN" --storage "$DATA/registry" --data-dir "$DATA" >"$DEMO/registry.yml"
current_log="$LOGS/registry.log"
docker-registry serve "$DEMO/registry.yml" >"$LOGS/registry.log" 2>&1 &
pids+=($!)
wait_port "$REGISTRY" || die "docker-registry did not start"
export BERTH_URL="http://$LISTEN"
BERTH_TOKEN=$("$BERTH" dev-token --account "$ACCOUNT" --data-dir "$DATA")
export BERTH_TOKEN
info "berth serve and the registry are up; provider account: $ACCOUNT"

step "1/5 push" "$LOGS/push.log" "a push key for namespace $ACCOUNT, then docker push of a small sample image"
image="$REGISTRY/$ACCOUNT/hello:v1"
mkdir -p "$DEMO/image/www" "$DEMO/docker"
cp /bin/busybox "$DEMO/image/busybox"
printf 'Alibaba Spring Sample!\n' >"$DEMO/image/www/hello"
cat >"$DEMO/image/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
COPY www /www
EXPOSE 8080
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
EOF
{
  "$BERTH" credentials push 2>>"$LOGS/push.log" | docker --config "$DEMO/docker" login --username "$ACCOUNT" --password-stdin "$REGISTRY"
  docker build -q -t "$image" "$DEMO/image"
  docker --config "$DEMO/docker" push "$image"
  docker rmi "$image"
} >>"$LOGS/push.log" 2>&1 || die "pushing $image with a push key failed"
info "pushed $image (the local copy is removed: the agent pulls it through Berth's token auth)"

step "2/5 package" "$LOGS/berth.log" "deployment package hello_web, checked against the registry"
published=$("$BERTH" package create hello_web --description "the seed's sample page" --version v1_0 \
  --image "$ACCOUNT/hello:v1" --wait --output json 2>>"$LOGS/berth.log") || die "package create failed"
status=$(json version.status <<<"$published")
digest=$(json version.images.0.digest <<<"$published")
[ "$status" = Available ] || die "the version is $status: $(json version <<<"$published")"
info "hello_web v1_0 is Available, pinned to $digest"

step "3/5 render" "$LOGS/berth.log" "the seed's ACK template (Secret + Deployment)"
cat >"$DEMO/template.yaml" <<'EOF'
Resources:
  ClusterApplication:
    Type: ALIYUN::CS::ClusterApplication
    Properties:
      YamlContent: |
          apiVersion: v1
          data:
            .dockerconfigjson: {{computenest::acr::dockerconfigjson}}
          kind: Secret
          metadata:
            name: computenestrepo
            namespace: nginx
          type: kubernetes.io/dockerconfigjson
          ---
          apiVersion: apps/v1
          kind: Deployment
          spec:
            template:
              spec:
                containers:
                - name: nginx
                  image: {{ computenest::acrimage::nginx }}
                  ports:
                  - containerPort: 80
                imagePullSecrets:
                - name: computenestrepo
EOF
cat >"$DEMO/config.yaml" <<'EOF'
Service:
  DeployMetadata:
    SupplierDeployMetadata:
      AcrImageArtifactRelation:
        '{{ computenest::acrimage::nginx }}':
          ArtifactId: hello_web
          ArtifactVersion: 1
    TemplateConfigs:
      - Name: ACK
        Url: template.yaml
EOF
"$BERTH" render "$DEMO/template.yaml" --config "$DEMO/config.yaml" -o "$DEMO/rendered.yaml" 2>>"$LOGS/berth.log" \
  || die "render failed"
grep -q 'computenest::' "$DEMO/rendered.yaml" && die "an identifier was left in $DEMO/rendered.yaml"
grep -q "image: $image" "$DEMO/rendered.yaml" || die "the image line is not $image"
info "substituted lines of $DEMO/rendered.yaml (the pull key shortened here):"
grep -E '\.dockerconfigjson:|image:' "$DEMO/rendered.yaml" | sed -E 's/(dockerconfigjson: .{24}).*/\1... (a pull-only key for demo\/hello)/; s/^ */      /'

step "4/5 release" "$LOGS/agent.log" "application demo, group web with one berth-agent, release with the seed's scripts"
api POST /v1/applications '{"name":"demo"}' >/dev/null
join=$(api POST /v1/applications/demo/groups '{"name":"web","kind":"static"}' | json join_token)
BERTH_JOIN_TOKEN="$join" "$AGENT" --berth-url "http://$LISTEN" --host-id demo-host --state-dir "$DATA/agent" >"$LOGS/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ "$(api GET /v1/applications/demo/groups/web | json instances | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -ge 1 ] && break
  sleep 0.1
done
start_script=$(cat <<EOF
### The Docker image is pulled by the agent before this runs.
function start_application() {
  image_name="$REGISTRY/$ACCOUNT/hello@$digest"
  container_name="$CONTAINER"
  docker run -d -p $APP_PORT:8080 --name \${container_name} \${image_name}
}
start_application
EOF
)
stop_script=$(cat <<EOF
function stop_application() {
  container_name="$CONTAINER"
  container_id=\$(docker ps -aq -f name=^\${container_name}\$)
  if [ -n "\$container_id" ]; then
    docker rm -f \$container_id
  fi
}
stop_application
EOF
)
# The seed's last step is the release's own check: the host is `verifying` until
# /hello answers the seed's body, and the release fails at `step: health` if it never does.
deployment=$(python3 -c 'import json,sys; print(json.dumps({"name": "web", "image": {"package": "hello_web", "version": "v1_0"},
  "working_directory": sys.argv[1], "start_script": sys.argv[2], "stop_script": sys.argv[3], "step_timeout_seconds": 120,
  "health": {"http": {"url": sys.argv[4], "expect_body": "Alibaba Spring Sample!"}, "interval_seconds": 1,
             "deadline_seconds": 60}}))' \
  "$(cd "$DEMO" && pwd)/workdir" "$start_script" "$stop_script" "http://localhost:$APP_PORT/hello")
api POST /v1/applications/demo/deployments "$deployment" >/dev/null
release_id=$("$BERTH" release create --application demo --deployment web --group web 2>>"$LOGS/release.log") \
  || { current_log="$LOGS/release.log"; die "the release was refused"; }
current_log="$LOGS/agent.log (and berth release logs $release_id --host demo-host)"
if $CHECK; then
  "$BERTH" release get "$release_id" --watch --output json >"$DEMO/release.json" 2>>"$LOGS/release.log" \
    || die "release $release_id did not succeed: $(cat "$DEMO/release.json")"
  info "release $release_id: $(json status <"$DEMO/release.json")"
else
  "$BERTH" release get "$release_id" --watch || die "release $release_id did not succeed"
fi

step "5/5 check" "$LOGS/agent.log" "curl http://localhost:$APP_PORT/hello"
answer=""
for _ in $(seq 50); do answer=$(curl -fsS "http://localhost:$APP_PORT/hello" 2>/dev/null) && break; sleep 0.1; done
[ "$answer" = "Alibaba Spring Sample!" ] || die "curl http://localhost:$APP_PORT/hello answered '$answer'"
info "$answer"

if $CHECK; then
  printf '\n'; bold "every step passed"
  exit 0
fi

cat <<TXT

Berth is up, and the demo is deployed.
  API:        http://$LISTEN          (GET /healthz)
  console:    http://$LISTEN/console/  (sign in with the account token: the BERTH_TOKEN below)
  registry:   $REGISTRY           (token auth by Berth)
  the app:    http://localhost:$APP_PORT/hello  (container $CONTAINER)
  logs:       $LOGS/

Try, as provider "$ACCOUNT":
  export BERTH_URL=http://$LISTEN BERTH_TOKEN=$BERTH_TOKEN
  target/debug/berth credentials push | docker login --username $ACCOUNT --password-stdin $REGISTRY
  target/debug/berth package list
  target/debug/berth package get hello_web
  target/debug/berth render $DEMO/template.yaml --config $DEMO/config.yaml --dry-run
  target/debug/berth release logs $release_id --host demo-host

Ctrl-C stops everything and removes the demo container.
TXT
current_step="running"; current_log="$LOGS/"
wait -n "${pids[@]}"
die "a component stopped"
