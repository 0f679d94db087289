#!/usr/bin/env bash
# Runs the chat services on a local kind cluster with the Helm chart:
# builds the images with docker, loads them into kind, installs charts/chat
# (in-chart Redis, dev mode on), port-forwards the gateway and the realtime
# Services, and prints the URLs. Ctrl-C stops the port-forwards; the cluster
# stays (`kind delete cluster --name chat` removes it).
#
# Needs docker (with a running engine), kind, kubectl, helm and curl.
# Settings (environment): KIND_CLUSTER (chat), NAMESPACE (chat), RELEASE (chat),
# TAG (dev), GATEWAY_PORT (8080), REALTIME_PORT (8081).
set -euo pipefail

cluster=${KIND_CLUSTER:-chat}
namespace=${NAMESPACE:-chat}
release=${RELEASE:-chat}
tag=${TAG:-dev}
gateway_port=${GATEWAY_PORT:-8080}
realtime_port=${REALTIME_PORT:-8081}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in docker kind kubectl helm curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "kind-up: $tool is not installed" >&2
        exit 1
    fi
done

if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    kind create cluster --name "$cluster" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

for component in gateway realtime; do
    image="chat-$component:$tag"
    echo "kind-up: building $image"
    DOCKER_BUILDKIT=1 docker build -f docker/Dockerfile --target "$component" -t "$image" .
    kind load docker-image "$image" --name "$cluster"
done

# The release name contains "chat", so the Services are $release-gateway and
# $release-realtime (see the chart's fullname rule).
helm upgrade --install "$release" charts/chat \
    --namespace "$namespace" --create-namespace \
    --set gateway.image.repository=chat-gateway \
    --set gateway.image.tag="$tag" \
    --set gateway.image.pullPolicy=IfNotPresent \
    --set gateway.replicaCount=1 \
    --set realtime.image.repository=chat-realtime \
    --set realtime.image.tag="$tag" \
    --set realtime.image.pullPolicy=IfNotPresent \
    --set realtime.replicaCount=1 \
    --set config.devMode=true \
    --set config.logFormat=text \
    --wait --timeout 5m

fullname=$release
if [[ $release != *chat* ]]; then fullname="$release-chat"; fi

pids=()
stop() {
    if ((${#pids[@]})); then kill "${pids[@]}" 2>/dev/null || true; fi
}
trap stop EXIT INT TERM

kubectl -n "$namespace" port-forward "svc/$fullname-gateway" "$gateway_port:8080" >/dev/null &
pids+=($!)
kubectl -n "$namespace" port-forward "svc/$fullname-realtime" "$realtime_port:8081" >/dev/null &
pids+=($!)

# Wait until the gateway answers through the forward.
for _ in $(seq 1 50); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$gateway_port/openapi.json" 2>/dev/null; then break; fi
    sleep 0.2
done

cat <<MSG

chat is running on kind cluster "$cluster", namespace "$namespace":

  HTTP API   http://127.0.0.1:$gateway_port   (OpenAPI: http://127.0.0.1:$gateway_port/openapi.json)
  WebSocket  ws://127.0.0.1:$realtime_port/ws

  dev token: curl -X POST -H 'Content-Type: application/json' -d '{"user":"alice"}' http://127.0.0.1:$gateway_port/v1/auth/dev-token

Ctrl-C stops the port-forwards.
MSG
wait
