#!/bin/sh
# Entry point of the edge image: tells nginx which DNS server the container uses
# (Docker's 127.0.0.11, podman's network gateway, ...), read off /etc/resolv.conf, so
# the upstream names of upstreams.conf are re-resolved while it runs. Then runs the
# command (nginx in the foreground).
set -eu
# The first nameserver is the runtime's own DNS, which knows the service names; any
# further ones are the host's, which do not.
servers=$(awk '/^nameserver/ { a = $2; if (a ~ /:/) a = "[" a "]"; print a; exit }' /etc/resolv.conf)
# A short `valid`: a recreated replica's address is in use within 5 s.
echo "resolver ${servers:-127.0.0.11} valid=5s ipv6=off;" >/etc/nginx/resolver.conf
exec "$@"
