#!/usr/bin/env bash
# The load tester's peer dialects against the real peer servers: installs the peers'
# npm packages into loadtest/peers/node_modules (npm ci; Bun's binary comes with the
# `bun` package), then runs chat-loadtest's ignored tests/peers.rs (2 Bun processes, or
# 2 Socket.IO processes and the redis-emitter publisher, over a real redis-server;
# fanout over HTTP and WebSocket, rooms, idle: every delivery once). The whole
# comparison at a small size is `loadtest/peers/compare.sh --quick`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if [ ! -x node_modules/.bin/bun ] || [ ! -d node_modules/socket.io ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
cd ../..
cargo test -p chat-loadtest --locked --test peers -- --ignored
