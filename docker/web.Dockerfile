# syntax=docker/dockerfile:1
#
# The edge of docker-compose.yml: nginx serving the web client (web/dist) and
# proxying /ws to the realtime replicas and the API to the gateway.
# The build context is the repository root:
#
#   docker build -f docker/web.Dockerfile -t chat-edge:dev .
#
# docker/nginx/upstreams.conf names the compose services; mount another file
# over /etc/nginx/upstreams.conf to point the edge elsewhere.

ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM nginx:1.27-alpine AS edge
COPY docker/nginx/edge.conf /etc/nginx/nginx.conf
COPY docker/nginx/upstreams.conf /etc/nginx/upstreams.conf
COPY --from=web /src/web/dist /usr/share/nginx/html
EXPOSE 80
# The nginx image has busybox wget; /nginx-health is answered by nginx itself.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/nginx-health"]
