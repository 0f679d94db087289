#!/usr/bin/env bash
# The checks are functions run through check(), which shellcheck cannot follow.
# shellcheck disable=SC2317
#
# The container rehearsal: the project's images built from the real Dockerfiles,
# the compose stack up, and the Helm chart's pods played, all with podman (no
# Docker engine, no Kubernetes, no image registry here).
#
#   1. base images: local stand-ins made from Debian packages for every image the
#      Dockerfiles and docker-compose.yml name, tagged with those exact names
#      (docker/standins/README.md). Grafana and Jaeger cannot be made: left out.
#   2. the project's images from docker/Dockerfile and docker/web.Dockerfile, unmodified.
#   3. docker-compose.yml up (podman-compose), checked from the host through the
#      edge's published port (scripts/check_containers.py), then down.
#   4. the chart rendered (ci/minimal-values.yaml; production-like values with the
#      bundled Redis) and played with `podman kube play`: the bundled Redis asks for
#      its password, taken from a Secret made here, and so does redis_exporter.
#
# Runs on a fresh Debian 12 as root: it installs podman, runc, debootstrap and, in a
# venv under .cache/, podman-compose, helm-python-sdk and websockets. Everything it
# keeps lives under .cache/containers: the debootstrap tarball, podman's image store
# (images and build layers: a second run rebuilds nothing that did not change).
# Prints one line per check and, last, `containers: N passed, M failed`.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
START=$SECONDS
CACHE=$ROOT/.cache/containers
VENV=$ROOT/.cache/venv-containers
mkdir -p "$CACHE"

PIP_PACKAGES=(podman-compose==1.6.0 helm-python-sdk==0.2.2 websockets==17.4 pyyaml)
# Compose host ports of the rehearsal (on 127.0.0.1), apart from a developer's own.
export CHAT_EDGE_PORT=${CHAT_EDGE_PORT:-18080} CHAT_PROMETHEUS_PORT=${CHAT_PROMETHEUS_PORT:-19090}

passed=0
failed=0
LOG=$CACHE/logs
mkdir -p "$LOG"
# check NAME COMMAND...: one line per check; the command's output (its tail) on failure.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "ok    $name ($((SECONDS - START)) s)"
        # What the check saw (the helper's last line), when it said something short.
        local said
        said=$(printf '%s\n' "$out" | tail -n 1)
        if [[ -n $said && ${#said} -lt 200 && $said != sha256:* && ! $said =~ ^[0-9a-f]{64}$ ]]; then
            echo "      $said"
        fi
    else
        failed=$((failed + 1))
        echo "FAIL  $name ($((SECONDS - START)) s)"
        printf '%s\n' "$out" | tail -n 40 | sed 's/^/      /'
    fi
}
note() { echo "note  $*"; }
finish() {
    echo "took $((SECONDS - START)) s"
    echo "containers: $passed passed, $failed failed"
    ((failed == 0))
    exit
}

# ---- tools -----------------------------------------------------------------------

install_tools() {
    local missing=()
    for tool in podman runc debootstrap iptables; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || return 1
        # netavark + aardvark-dns: bridge networks whose containers resolve each other by
        # name; netavark sets them up with iptables.
        apt-get install -y -qq podman runc debootstrap netavark aardvark-dns iptables >/dev/null || return 1
    fi
    if [[ ! -x $VENV/bin/python ]]; then python3 -m venv "$VENV" || return 1; fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
}
# podman's own configuration, not the machine's: runc (crun fails on this kernel's
# hybrid cgroups), cgroupfs, ulimits under the machine's 20,000-file hard cap, local
# short names resolved as docker.io, and the image store under .cache/.
configure_podman() {
    mkdir -p "$CACHE/conf" "$CACHE/storage" /run/chat-containers
    cat >"$CACHE/conf/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
CONF
    cat >"$CACHE/conf/registries.conf" <<CONF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
CONF
    cat >"$CACHE/conf/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "/run/chat-containers"
CONF
    export CONTAINERS_CONF=$CACHE/conf/containers.conf
    export CONTAINERS_REGISTRIES_CONF=$CACHE/conf/registries.conf
    export CONTAINERS_STORAGE_CONF=$CACHE/conf/storage.conf
    podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphRoot}}'
}
check "install podman, runc, debootstrap; venv with ${PIP_PACKAGES[*]}" install_tools
configure_podman >/dev/null || { echo "FAIL  podman does not start"; failed=$((failed + 1)); finish; }
export PATH=$VENV/bin:$PATH

# ---- 1. base images: stand-ins ------------------------------------------------------

# The Debian mirror apt already uses (debootstrap and apt inside containers use it too).
MIRROR=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# Image NAME is up to date when its label chat.standin.key equals KEY.
image_key() { podman image inspect --format '{{index .Labels "chat.standin.key"}}' "$1" 2>/dev/null; }

debian_base() {
    local key tarball=$CACHE/debian-bookworm-minbase.tar
    key=$(echo "bookworm minbase $MIRROR" | sha256sum | cut -c1-16)
    [[ $(image_key chat-standin/debian:bookworm) == "$key" ]] && return 0
    if [[ ! -s $tarball || $(cat "$tarball.key" 2>/dev/null) != "$key" ]]; then
        local dir=$CACHE/rootfs
        rm -rf "$dir"
        debootstrap --variant=minbase bookworm "$dir" "$MIRROR" >"$LOG/debootstrap.log" 2>&1 || return 1
        tar -C "$dir" -cf "$tarball" . && echo "$key" >"$tarball.key" && rm -rf "$dir"
    fi
    podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL chat.standin.key=$key" "$tarball" chat-standin/debian:bookworm
}

# standin FILE NAME [BUILD ARGS...]: builds docker/standins/FILE, tags it NAME.
standin() {
    local file=$1 name=$2 key
    shift 2
    key=$( { cat "docker/standins/$file" docker/standins/*.sh; echo "$*"; image_key chat-standin/debian:bookworm; } | sha256sum | cut -c1-16)
    [[ $(image_key "$name") == "$key" ]] && return 0
    podman build -q --label "chat.standin.key=$key" -f "docker/standins/$file" -t "$name" "$@" docker/standins
}

# The names, read off the FROM lines and the compose file, so they cannot drift.
from_of() { sed -n "s/^FROM \([^ ]*\).*/\1/p" "$1"; }
RUST_VERSION=$(sed -n 's/^ARG RUST_VERSION=//p' docker/Dockerfile)
RUST_IMAGE=docker.io/library/$(from_of docker/Dockerfile | grep '^rust:' | sed "s/\${RUST_VERSION}/$RUST_VERSION/")
DISTROLESS_IMAGE=$(from_of docker/Dockerfile | grep distroless | sort -u)
NGINX_IMAGE=docker.io/library/$(from_of docker/web.Dockerfile | grep '^nginx:')
REDIS_IMAGE=docker.io/library/$(sed -n 's/^ *image: \(redis:.*\)$/\1/p' docker-compose.yml)
PROMETHEUS_IMAGE=docker.io/$(sed -n 's/^ *image: \(prom\/prometheus:.*\)$/\1/p' docker-compose.yml)
REDIS_EXPORTER_IMAGE=docker.io/$(sed -n 's/^ *image: \(oliver006\/redis_exporter:.*\)$/\1/p' docker-compose.yml)
SYSROOT=$(rustc --print sysroot)

rust_standin() {
    local have
    have=$(rustc --version | cut -d' ' -f2)
    if [[ $have != "$RUST_VERSION" ]]; then
        echo "the host's rustc is $have, docker/Dockerfile pins $RUST_VERSION"
        return 1
    fi
    standin rust.Containerfile "$RUST_IMAGE" -v "$SYSROOT:/toolchain:ro" -v /etc/ssl/certs:/host-certs:ro \
        --build-arg "HOST_CA=$(sha256sum /etc/ssl/certs/ca-certificates.crt | cut -c1-16)"
}
check "debian bookworm minbase (debootstrap from $MIRROR)" debian_base
check "stand-in $RUST_IMAGE (the host's toolchain $(rustc --version | cut -d' ' -f2))" rust_standin
check "stand-in $DISTROLESS_IMAGE" standin distroless.Containerfile "$DISTROLESS_IMAGE"
check "stand-in $REDIS_IMAGE (Debian's redis-server)" standin redis.Containerfile "$REDIS_IMAGE"
check "stand-in $NGINX_IMAGE (Debian's nginx)" standin nginx.Containerfile "$NGINX_IMAGE"
check "stand-in $PROMETHEUS_IMAGE (Debian's prometheus)" standin prometheus.Containerfile "$PROMETHEUS_IMAGE"
check "stand-in $REDIS_EXPORTER_IMAGE (Debian's prometheus-redis-exporter)" \
    standin redis-exporter.Containerfile "$REDIS_EXPORTER_IMAGE"
note "no stand-in for grafana/grafana or jaegertracing/all-in-one (no Debian package): left out of the rehearsal"

# ---- 2. the project's images, from the real Dockerfiles ---------------------------

TAG=dev
# chat_build_info{revision} of the images (the compose stack checks it).
REVISION=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
export CHAT_REVISION=$REVISION
build_image() {
    local target=$1 image=$2
    # --format docker keeps HEALTHCHECK (the OCI format has no such field).
    podman build -q --format docker -f docker/Dockerfile --target "$target" -t "$image" \
        --build-arg "CHAT_REVISION=$REVISION" . >"$LOG/build-$target.log" 2>&1 ||
        { tail -n 30 "$LOG/build-$target.log"; return 1; }
}
image_facts() {
    podman image inspect --format '{{.Size}} {{.Config.User}} {{json .Config.Healthcheck.Test}}' "$1"
}
# A runtime image: distroless user, a healthcheck that needs no shell, no shell at all.
runtime_image_ok() {
    local image=$1 binary=$2 facts
    facts=$(image_facts "$image") || return 1
    echo "$facts"
    [[ $facts == *" 65532:65532 "* ]] || { echo "$image: not running as 65532"; return 1; }
    [[ $facts == *"\"$binary\",\"healthcheck\""* ]] || { echo "$image: HEALTHCHECK is not '$binary healthcheck'"; return 1; }
    if podman run --rm --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
        echo "$image has a shell"
        return 1
    fi
}
for target in gateway realtime chat; do
    image=chat-$target:$TAG
    [[ $target == chat ]] && image=chat:$TAG
    t0=$SECONDS
    check "podman build docker/Dockerfile --target $target -t $image" build_image "$target" "$image"
    echo "      $((SECONDS - t0)) s, $(podman image inspect --format '{{.Size}}' "$image" 2>/dev/null | numfmt --to=iec) "
done
check "chat-gateway:$TAG: uid 65532, no shell, HEALTHCHECK runs the binary" \
    runtime_image_ok "chat-gateway:$TAG" /usr/local/bin/chat-gateway
check "chat-realtime:$TAG: uid 65532, no shell, HEALTHCHECK runs the binary" \
    runtime_image_ok "chat-realtime:$TAG" /usr/local/bin/chat-realtime
check "chat:$TAG: uid 65532, no shell, HEALTHCHECK runs the binary" runtime_image_ok "chat:$TAG" /usr/local/bin/chat
edge_image() {
    podman build -q --format docker -f docker/web.Dockerfile -t "chat-edge:$TAG" . >"$LOG/build-edge.log" 2>&1 ||
        { tail -n 30 "$LOG/build-edge.log"; return 1; }
}
check "podman build docker/web.Dockerfile -t chat-edge:$TAG" edge_image

# ---- 3. the compose stack -------------------------------------------------------------

HELPER=(python3 scripts/check_containers.py)
export CHECK_STATE=$CACHE/compose-state.json
# The services that can run here: all but grafana and jaeger (no image can be made).
SERVICES=(redis redis-exporter gateway realtime-1 realtime-2 edge prometheus)
compose() { podman-compose --project-name chat "$@"; }
compose_down() { compose down -t 20 >"$LOG/compose-down.log" 2>&1; }
compose_down
compose_up() {
    # The README's `docker compose up --build`, for the services that run here.
    compose --podman-build-args=--format=docker up -d --build "${SERVICES[@]}" >"$LOG/compose-up.log" 2>&1 ||
        { tail -n 30 "$LOG/compose-up.log"; return 1; }
}
check "podman-compose up -d --build ${SERVICES[*]}" compose_up
note "podman $(podman version --format '{{.Client.Version}}') cannot wait for service_healthy (podman-compose needs 4.6): the rehearsal runs each healthcheck itself"
check "compose healthchecks pass: chat-gateway/chat-realtime healthcheck (no shell)" \
    "${HELPER[@]}" compose_healthy gateway realtime-1 realtime-2
check "GET / through the edge serves the web client" "${HELPER[@]}" compose_web
check "/chat/send through the edge reaches WebSocket members on both replicas" "${HELPER[@]}" compose_fanout
check "Prometheus targets API: every chat target and redis_exporter up" "${HELPER[@]}" prometheus_targets
check "chat_build_info{revision=$REVISION}, process_* and redis_exporter's metrics in Prometheus" \
    "${HELPER[@]}" build_info "$REVISION"
check "chat services log without colour escapes (stdout is not a terminal)" \
    "${HELPER[@]}" no_ansi gateway realtime-1 realtime-2
check "stopping realtime-1: its members recover on realtime-2 with since, 0 lost" "${HELPER[@]}" compose_failover
check "realtime-1 recreated on a new address: the edge sends members to it" "${HELPER[@]}" compose_recreate
check "Prometheus targets API: every chat target up after the recreate" "${HELPER[@]}" prometheus_targets
compose_gone() {
    compose_down || { tail -n 20 "$LOG/compose-down.log"; return 1; }
    "${HELPER[@]}" compose_gone
}
check "podman-compose down leaves nothing running" compose_gone

# ---- 4. the Helm chart, played with podman kube play -------------------------------------

KUBE=$CACHE/kube
rm -rf "$KUBE"
mkdir -p "$KUBE"
render_chart() {
    local name=$1 values=$2
    python3 - "$name" "$values" "$KUBE/$name/rendered" <<'PY'
import os, sys, yaml
import helm_python as helm
name, values_json, out = sys.argv[1], sys.argv[2], sys.argv[3]
import json
values = json.loads(values_json)
if name in ("minimal", "production"):
    with open(f"charts/chat/ci/{name}-values.yaml") as f:
        base = yaml.safe_load(f)
    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a
    values = merge(base, values)
with helm.Chart.load("charts/chat") as chart:
    chart.validate_schema(values)
    rendered = chart.render(values, name="chat", namespace="chat", is_install=True)
os.makedirs(out, exist_ok=True)
for template, text in rendered.items():
    if template.endswith((".yaml", ".yml")) and text.strip():
        with open(os.path.join(out, os.path.basename(template)), "w") as f:
            f.write(text)
PY
}
IMAGES='{"chat-gateway": "localhost/chat-gateway:'$TAG'", "chat-realtime": "localhost/chat-realtime:'$TAG'", "chat": "localhost/chat:'$TAG'"}'
# Removes the pods kube play made for the release (named <deployment>-pod-N), from this
# run or an interrupted one.
kube_down() {
    local pods
    mapfile -t pods < <(podman pod ps --format '{{.Name}}' --filter 'name=^chat-.*-pod-[0-9]+$')
    # A second pass: podman 4.3 sometimes refuses the first while a container stops.
    if ((${#pods[@]})); then
        podman pod rm -f -t 5 "${pods[@]}" >/dev/null 2>&1 || podman pod rm -f -t 5 "${pods[@]}" >/dev/null 2>&1
    fi
    return 0
}
kube_play() {
    local name=$1 secret=$2 dir=$KUBE/$1
    "${HELPER[@]}" kube_prepare "$dir/rendered" "$dir" "$IMAGES" "$secret" || return 1
    kube_down
    # The release's Secrets as podman secrets (see kube_prepare), fresh for each play.
    local secret
    for secret in "$dir"/secrets/*.json; do
        [[ -e $secret ]] || continue
        podman secret rm "$(basename "$secret" .json)" >/dev/null 2>&1
        podman secret create "$(basename "$secret" .json)" "$secret" >/dev/null || return 1
    done
    podman kube play "$dir/redis.yaml" >"$LOG/kube-$name.log" 2>&1 || { tail -n 20 "$LOG/kube-$name.log"; return 1; }
    "${HELPER[@]}" kube_alias "$dir/chat.yaml" chat-redis chat-redis || return 1
    podman kube play "$dir/chat.yaml" >>"$LOG/kube-$name.log" 2>&1 || { tail -n 20 "$LOG/kube-$name.log"; return 1; }
    "${HELPER[@]}" kube_check "$dir/secrets.yaml" "$dir/redis.yaml" "$dir/chat.yaml"
    local rc=$?
    kube_down
    return "$rc"
}
# Both renders use the images built above and the bundled Redis; the production-like
# one keeps ci/production-values.yaml otherwise (its auth Secret is made here).
check "helm render (ci/minimal-values.yaml)" render_chart minimal '{}'
check "helm render (ci/production-values.yaml, bundled Redis with its password from chat-auth)" render_chart production \
    '{"redis": {"enabled": true, "auth": {"existingSecret": "chat-auth"}}, "externalRedis": {"existingSecret": "", "caCert": ""}}'
check "kube play (ci/minimal-values.yaml): pods ready, non-root, read-only root fs; gateway pod -> realtime pod" \
    kube_play minimal chat-auth
check "kube play (production-like values): pods ready, non-root, read-only root fs; gateway pod -> realtime pod" \
    kube_play production chat-auth
note "kube play is no cluster: Services (simulated by host aliases), HPA, PDB, Ingress, NetworkPolicy, ServiceMonitor and PrometheusRule are rendered but not exercised"

finish
