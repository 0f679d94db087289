#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with schemathesis: builds and
# starts `chat` (dev mode, memory engine, an API key) on a free loopback port, runs
# schemathesis once with a user token and once with the API key (the two security
# schemes), stops the server and prints `api: N passed, M failed` (operations).
#
# Checks: not_a_server_error (no 5xx), status_code_conformance, content_type_conformance
# and response_schema_conformance (every answer is documented, with its schema), and
# positive_data_acceptance (a request valid by the schema is not refused as malformed).
# Bounded: API_MAX_EXAMPLES per operation and phase (default 50), API_MAX_TIME seconds
# per run at most (default 300).
#
# schemathesis is pinned and installed into a venv under .cache/ (git-ignored).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

SCHEMATHESIS=schemathesis==4.32.5
VENV=.cache/api-venv
MAX_EXAMPLES=${API_MAX_EXAMPLES:-50}
MAX_TIME=${API_MAX_TIME:-300}
API_KEY=check-api-key

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "${SCHEMATHESIS#*==}"; then
    python3 -m venv "$VENV" || exit 2
    "$VENV/bin/pip" install -q "$SCHEMATHESIS" || exit 2
fi

ST=$PWD/$VENV/bin/st
cargo build -q --locked -p chat || exit 2
BIN=${CARGO_TARGET_DIR:-target}/debug/chat

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The per-user publish budget would answer most of alice's cases 429 (declared, so
# conformant) and leave the routes behind it unexplored.
CHAT_ADDR=127.0.0.1:$PORT CHAT_DEV_MODE=true CHAT_API_KEYS=$API_KEY CHAT_HTTP_RATE_LIMIT_PER_SEC=1000000 \
    CHAT_JWT_SECRET=check-api-secret-of-enough-bytes RUST_LOG=warn \
    "$BIN" >"$WORK/chat.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 100); do
    curl -sf "$BASE/healthz" >/dev/null && break
    sleep 0.1
done
TOKEN=$(curl -sf "$BASE/v1/auth/dev-token" -d '{"user":"alice"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])') || {
    echo "api: chat did not start"; cat "$WORK/chat.log"; exit 1; }

passed=0
failed=0
run() { # name, bearer
    local name=$1 bearer=$2 out=$WORK/$1.txt
    # From the scratch directory: schemathesis keeps its state in the current one.
    (cd "$WORK" && timeout "$MAX_TIME" "$ST" run "$BASE/openapi.json" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance \
        --header "Authorization: Bearer $bearer" \
        --max-examples "$MAX_EXAMPLES" \
        --seed 1 --no-color) >"$out" 2>&1
    local rc=$?
    # The summary's line after "Test cases:": "N generated, P passed[, F failed]", or
    # "N generated, N found F unique failures".
    local cases p f
    cases=$(grep -A1 '^Test cases:' "$out" | tail -1)
    p=$(grep -oE '[0-9]+ passed' <<<"$cases" | grep -oE '[0-9]+')
    f=$(grep -oE '[0-9]+ (failed|unique failures?)' <<<"$cases" | grep -oE '^[0-9]+')
    p=${p:-0}
    f=${f:-0}
    # A schema error or a timeout fails no test case but fails the run.
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    echo "api ($name): $p passed, $f failed"
    if [ "$rc" -ne 0 ]; then tail -80 "$out"; fi
    passed=$((passed + p))
    failed=$((failed + f))
}
run user-token "$TOKEN"
run api-key "$API_KEY"
if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "chat died during the run:"; tail -20 "$WORK/chat.log"; failed=$((failed + 1))
fi
echo "api: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
