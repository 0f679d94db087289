#!/usr/bin/env bash
# Runs the README's commands as written, so the README cannot drift from the code:
# its first command (`cargo run --release`) with the walk-through's curl block against
# it, and the split deployment's two blocks. Blocks that need a person (wscat's
# interactive prompt) or tools this machine lacks (Docker, Kubernetes) are named as
# not run. Prints `readme: N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

passed=0 failed=0
pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAILED: $1" >&2; failed=$((failed + 1)); }

# The Nth (from 1) fenced sh block under a README heading, as written.
block() {
  python3 - "$1" "$2" <<'PY'
import sys
heading, n = sys.argv[1], int(sys.argv[2])
text = open("README.md").read()
section = text.split("\n" + heading + "\n", 1)[1].split("\n## ", 1)[0]
blocks = section.split("```sh\n")[1:]
print(blocks[n - 1].split("```", 1)[0], end="")
PY
}

busy=""
for port in 8080 8090 8091 8092 6390; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy="$busy $port"; fi
done
if [ -n "$busy" ]; then
  echo "readme: the README's ports are in use here:$busy; stop what listens there" >&2
  echo "readme: 0 passed, 1 failed"
  exit 1
fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

wait_ready() { # url, pid: until the URL answers, as long as the process lives (a cold
  # release build takes minutes)
  until curl -sf "$1" >/dev/null; do
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.5
  done
}

# 1. The first command, then the walk-through's curl block against it.
# shellcheck disable=SC2016 # the backticks are the fence being matched
first=$(sed -n '/^```sh$/,/^```$/p' README.md | sed -n 2p | sed 's/ *#.*//')
[ "$first" = "cargo run --release" ] || fail "the README's first command is '$first', not what this script runs"
echo "== $first"
CARGO_TERM_COLOR=never $first >"$work/chat.log" 2>&1 &
chat=$!
if wait_ready http://localhost:8080/readyz "$chat"; then
  pass "$first serves http://localhost:8080"
  block "## Walk-through (curl + wscat)" 2 >"$work/walk.sh"
  if out=$(bash -e "$work/walk.sh" 2>&1) \
    && grep -q '"room":"general","seq":1,"epoch":' <<<"$out" \
    && grep -q '"room":"@bob","seq":1' <<<"$out" \
    && grep -q '"text":"hi again"' <<<"$out"; then
    pass "walk-through: the curl block's answers are the ones the README shows"
  else
    fail "walk-through curl block: $out"
  fi
  if page=$(curl -sf http://localhost:8080/) && grep -q "<html" <<<"$page"; then
    pass "web client at http://localhost:8080"
  else
    fail "GET / did not serve the web client"
  fi
else
  fail "$first never became ready: $(tail -5 "$work/chat.log")"
fi
kill "$chat" 2>/dev/null; wait "$chat" 2>/dev/null
echo "not run: the walk-through's wscat block (an interactive prompt; the end-to-end tests drive /ws)"

# 2. The split deployment, both blocks in one shell (the second stops what the first
# started).
echo "== split deployment"
{ block "## Running the split deployment by hand" 1; block "## Running the split deployment by hand" 2; } >"$work/split.sh"
if out=$(timeout 1200 bash -e "$work/split.sh" 2>&1) \
  && grep -q '"room":"general","seq":1,"epoch":' <<<"$out"; then
  pass "split deployment: built, started, published through the gateway, stopped"
else
  fail "split deployment: $(tail -20 <<<"$out")"
fi
redis-cli -p 6390 shutdown nosave >/dev/null 2>&1

echo "not run: Docker compose and Kubernetes sections (scripts/check-containers.sh rehearses them with podman where it can)"
echo "readme: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
