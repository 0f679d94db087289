# syntax=docker/dockerfile:1
#
# The edge of docker-compose.yml: nginx serving the web client (web/dist) and
# proxying /ws to the realtime replicas and the API to the gateway.
# The build context is the repository root:
#
#   docker build -f docker/web.Dockerfile -t chat-edge:dev .
#
# The web client is the committed Vite build in web/dist (the same files `chat`
# embeds; `cd web && npm run build` refreshes them), so the image needs no node
# stage and no npm registry.
#
# docker/nginx/upstreams.conf names the compose services; mount another file
# over /etc/nginx/upstreams.conf to point the edge elsewhere.

FROM nginx:1.27.3-alpine AS edge
COPY docker/nginx/edge.conf /etc/nginx/nginx.conf
COPY docker/nginx/upstreams.conf /etc/nginx/upstreams.conf
COPY docker/nginx/edge-start.sh /usr/local/bin/edge-start.sh
COPY web/dist/ /usr/share/nginx/html/
EXPOSE 80
# The nginx image has busybox wget; /nginx-health is answered by nginx itself.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/nginx-health"]
# Writes the resolver for the upstream names, then runs nginx in the foreground.
ENTRYPOINT ["/usr/local/bin/edge-start.sh"]
CMD ["nginx", "-g", "daemon off;"]
