#!/usr/bin/env bash
# Every test of the web client: vitest unit tests, the type check, a check that the
# committed web/dist is what the sources build to, and the end-to-end test in headless
# Chromium against a real `chat` (memory engine, then Redis).
#
# Needs Node >= 20.19 with npm, Debian's chromium and redis-server (.ci/run installs
# them), and cargo when target/debug/chat is not built yet. Installs nothing globally:
# `npm ci` fills web/node_modules when it is missing.
# Ends with one line: `web: N passed, M failed`; exits non-zero when M > 0.
set -uo pipefail
cd "$(dirname "$0")/.."
WEB=$(pwd)
ROOT=$(cd .. && pwd)
ART="$WEB/test-artifacts"
mkdir -p "$ART"

passed=0
failed=0
pass() { passed=$((passed + $1)); }
fail() { failed=$((failed + $1)); echo "FAILED: $2" >&2; }
finish() {
  echo "web: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

node_major=$(node -p 'process.versions.node.split(".").map(Number).reduce((a, v, i) => i === 0 ? v * 1000 : i === 1 ? a + v : a, 0)' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20019 ]; then
  fail 1 "Node >= 20.19 is needed (vite 8, jsdom 27); found $(node --version 2>/dev/null || echo none)"
  finish
fi

if [ ! -d node_modules ]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund || { fail 1 "npm ci"; finish; }
fi

# Adds a vitest JSON report's counts. No test is skipped on purpose, so a skipped test
# (its suite's setup failed) counts as failed; so does a failed run without a failed
# test (a file that does not load).
count() {
  local report=$1 status=$2 name=$3 counts
  counts=$(node -e '
    try {
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      console.log(r.numPassedTests, r.numFailedTests + r.numPendingTests + r.numTodoTests);
    } catch { console.log("0 0"); }' "$report")
  local p=${counts% *} f=${counts#* }
  pass "$p"
  if [ "$f" -gt 0 ]; then
    fail "$f" "$name: $f test(s)"
  elif [ "$status" -ne 0 ]; then
    fail 1 "$name: vitest exited with status $status"
  fi
}

echo "== unit tests (vitest)"
rm -f "$ART/unit.json"
npx vitest run --project unit --reporter=default --reporter=json --outputFile.json="$ART/unit.json"
count "$ART/unit.json" $? unit

echo "== type check (tsc)"
if npx tsc -p .; then pass 1; else fail 1 "type check"; fi

echo "== web/dist is the build of these sources"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! npx vite build --outDir "$tmp/dist" --emptyOutDir --logLevel warn; then
  fail 1 "vite build"
elif ! diff -r "$tmp/dist" dist >"$tmp/diff" 2>&1; then
  head -20 "$tmp/diff" >&2
  fail 1 "web/dist is stale: run npm --prefix web run build"
else
  pass 1
fi

echo "== end-to-end (headless Chromium, real chat, real Redis)"
for tool in redis-server /usr/bin/chromium; do
  command -v "$tool" >/dev/null || { fail 1 "$tool is missing: apt-get install -y chromium redis-server"; finish; }
done
# cargo puts the binary under CARGO_TARGET_DIR when that is set.
export CHAT_BIN="${CHAT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/chat}"
if [ ! -x "$CHAT_BIN" ]; then
  echo "== cargo build -p chat"
  (cd "$ROOT" && cargo build -p chat) || { fail 1 "cargo build -p chat"; finish; }
fi
rm -f "$ART/e2e.json"
npx vitest run --project e2e --reporter=default --reporter=json --outputFile.json="$ART/e2e.json"
count "$ART/e2e.json" $? e2e

finish
