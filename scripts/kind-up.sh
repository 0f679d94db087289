#!/usr/bin/env bash
# Runs the chat services on a local kind cluster with the Helm chart, as the README's
# Kubernetes section says:
#
#   1. builds chat-gateway:$TAG, chat-realtime:$TAG and chat:$TAG (the web client)
#      with `docker build -f docker/Dockerfile --target …`,
#   2. `kind load docker-image` each into the cluster (created if missing),
#   3. installs ingress-nginx (kind's manifest) unless an ingress class exists,
#   4. `helm upgrade --install` charts/chat with those images, dev mode on, the
#      in-chart Redis and the Ingress on host `localhost`,
#   5. `kubectl port-forward` the ingress controller to 127.0.0.1:$PORT, so
#      http://localhost:$PORT serves the web client, /ws and the API on one origin.
#
# Ctrl-C stops the port-forward; the cluster stays (`kind delete cluster --name chat`).
# Needs docker (with a running engine), kind, kubectl, helm and curl, and network
# access for the ingress-nginx manifest and images.
# Settings (environment): KIND_CLUSTER (chat), NAMESPACE (chat), RELEASE (chat),
# TAG (dev), PORT (8080), INGRESS_NGINX_VERSION (controller-v1.12.1).
set -euo pipefail

cluster=${KIND_CLUSTER:-chat}
namespace=${NAMESPACE:-chat}
release=${RELEASE:-chat}
tag=${TAG:-dev}
port=${PORT:-8080}
ingress_version=${INGRESS_NGINX_VERSION:-controller-v1.12.1}

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

for target in gateway realtime chat; do
    image="chat-$target:$tag"
    [[ $target == chat ]] && image="chat:$tag"
    echo "kind-up: building $image"
    DOCKER_BUILDKIT=1 docker build -f docker/Dockerfile --target "$target" -t "$image" .
    kind load docker-image "$image" --name "$cluster"
done

if [[ -z $(kubectl get ingressclass -o name 2>/dev/null) ]]; then
    echo "kind-up: installing ingress-nginx $ingress_version"
    kubectl apply -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/$ingress_version/deploy/static/provider/kind/deploy.yaml"
    kubectl -n ingress-nginx wait --for=condition=Ready pod \
        --selector=app.kubernetes.io/component=controller --timeout=180s
fi

# The chart makes up no secret: the token secret and the Redis password live in a
# Secret created once, kept across re-runs (and so are the tokens it signed).
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if ! kubectl -n "$namespace" get secret "$release-secrets" >/dev/null 2>&1; then
    kubectl -n "$namespace" create secret generic "$release-secrets" \
        --from-literal=jwt-secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
        --from-literal=redis-password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi

helm upgrade --install "$release" charts/chat \
    --namespace "$namespace" --create-namespace \
    --set auth.existingSecret="$release-secrets" \
    --set redis.auth.existingSecret="$release-secrets" \
    --set gateway.image.repository=chat-gateway \
    --set gateway.image.tag="$tag" \
    --set gateway.replicaCount=1 \
    --set realtime.image.repository=chat-realtime \
    --set realtime.image.tag="$tag" \
    --set realtime.replicaCount=1 \
    --set web.image.repository=chat \
    --set web.image.tag="$tag" \
    --set config.devMode=true \
    --set config.logFormat=text \
    --set ingress.enabled=true \
    --set ingress.className=nginx \
    --set 'ingress.hosts={localhost}' \
    --set 'ingress.annotations.nginx\.ingress\.kubernetes\.io/proxy-read-timeout=3600' \
    --set 'ingress.annotations.nginx\.ingress\.kubernetes\.io/proxy-send-timeout=3600' \
    --wait --timeout 5m

pid=
stop() { if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi; }
trap stop EXIT INT TERM
kubectl -n ingress-nginx port-forward svc/ingress-nginx-controller "$port:80" >/dev/null &
pid=$!

# Wait until the web client answers through the Ingress.
for _ in $(seq 1 50); do
    if curl -fsS -o /dev/null "http://localhost:$port/" 2>/dev/null; then break; fi
    sleep 0.2
done

cat <<MSG

chat is running on kind cluster "$cluster", namespace "$namespace":

  web client  http://localhost:$port/   (dev mode: sign in with any name)
  HTTP API    http://localhost:$port/v1/…   (OpenAPI: http://localhost:$port/openapi.json)
  WebSocket   ws://localhost:$port/ws

  dev token: curl -X POST -H 'Content-Type: application/json' -d '{"user":"alice"}' http://localhost:$port/v1/auth/dev-token

Ctrl-C stops the port-forward.
MSG
wait
