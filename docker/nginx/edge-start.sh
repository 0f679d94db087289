#!/bin/sh
# Entry point of the edge image: tells nginx which DNS server the container uses
# (Docker's 127.0.0.11, podman's network gateway, ...), read off /etc/resolv.conf, so
# the upstream names of upstreams.conf are re-resolved while it runs. Then runs the
# command (nginx in the foreground).
set -eu
servers=$(awk '/^nameserver/ { a = $2; if (a ~ /:/) a = "[" a "]"; printf "%s ", a }' /etc/resolv.conf)
# A short `valid`: a recreated replica's address is in use within 5 s.
echo "resolver ${servers:-127.0.0.11} valid=5s ipv6=off;" >/etc/nginx/resolver.conf
exec "$@"
