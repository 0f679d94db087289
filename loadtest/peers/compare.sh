#!/usr/bin/env bash
# The side-by-side comparison of issue #16: chat, a hand-rolled Bun server (bun-server.js)
# and Socket.IO 4.8 with the Redis adapter (socketio-server.js + socketio-publisher.js),
# driven by the one chat-loadtest, interleaved, and written into BENCHMARKS.md between
# the peers-compare marker comments.
#
# Each system gets, fresh for every run: its own redis-server on a free port (never
# 6379), 2 WebSocket server processes, and its publisher (chat-gateway; Socket.IO's
# redis-emitter endpoint; Bun's servers take POST /publish themselves). The server CPU
# of every one of those processes, Redis included, is measured (--server-pid each).
# JSON frames, 100-byte messages, open-loop schedules; chat with its defaults.
#
# Usage: loadtest/peers/compare.sh [--quick] [--runs N] [--systems chat,bun,socketio]
#                                  [--benchmarks FILE] [--no-write] [--out DIR]
#   --quick        short durations and small sizes, 1 run: a smoke test of the whole
#                  pipeline; writes its table to DIR/table.md only (not BENCHMARKS.md,
#                  unless --benchmarks names a file)
#   --runs N       runs per scenario and system (default 3); the table shows medians
#   --benchmarks F the file whose marked section is replaced (default BENCHMARKS.md)
#   --no-write     print the table, write no benchmarks file
#   --out DIR      where the JSON reports and logs go (default a new directory in /tmp)
# Needs: cargo, node + npm (installs loadtest/peers/node_modules with npm ci), redis-server,
# python3. Exit status: 0 when every run was carried out (losses are reported in the
# table, not fatal); 1 when a run could not be (then no benchmarks file is written).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
quick=0 runs=3 systems="chat,bun,socketio" benchmarks="" write=1 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --runs) runs=$2; shift ;;
    --systems) systems=$2; shift ;;
    --benchmarks) benchmarks=$2; shift ;;
    --no-write) write=0 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  [ "$runs" = 3 ] && runs=1
  if [ -z "$benchmarks" ]; then write=0; fi
fi
[ -n "$benchmarks" ] || benchmarks="$root/BENCHMARKS.md"
[ -n "$out" ] || out=$(mktemp -d /tmp/chat-compare.XXXXXX)
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

say() { printf 'compare: %s\n' "$*" >&2; }

# --- build ---------------------------------------------------------------------------
say "building chat-realtime, chat-gateway, chat-loadtest (release)"
(cd "$root" && cargo build --release --locked -q -p chat-realtime -p chat-gateway -p chat-loadtest)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release"
if [ ! -x "$here/node_modules/.bin/bun" ] || [ ! -d "$here/node_modules/socket.io" ]; then
  say "installing the peers' npm packages into $here/node_modules"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
BUN="$here/node_modules/.bin/bun"
"$BUN" --version >/dev/null

# --- processes -----------------------------------------------------------------------
free_port() {
  python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p != 6379: print(p); break'
}
wait_port() { # port, what
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  say "$2 did not listen on port $1 (logs in $out)"; return 1
}
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
lt_pid=""
interrupted() {
  [ -n "$lt_pid" ] && kill -TERM "$lt_pid" 2>/dev/null
  stop_all
  say "interrupted"
  exit 130
}
trap stop_all EXIT
trap interrupted INT TERM

# start SYSTEM TAG: starts the system's processes; sets lt_args (targets, publisher,
# dialect) and pids.
start() {
  local sys=$1 tag=$2 rp p1 p2 pp
  rp=$(free_port); p1=$(free_port); p2=$(free_port); pp=$(free_port)
  redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no \
    >"$out/$tag.redis.log" 2>&1 &
  pids+=($!)
  wait_port "$rp" redis
  local redis="redis://127.0.0.1:$rp"
  case "$sys" in
    chat)
      export CHAT_REDIS_URL=$redis CHAT_DEV_MODE=true CHAT_API_KEYS=bench-key RUST_LOG=warn \
        CHAT_JWT_SECRET=compare-secret-long-enough-for-hs256
      CHAT_REALTIME_ADDR=127.0.0.1:$p1 "$bin/chat-realtime" >"$out/$tag.ws1.log" 2>&1 &
      pids+=($!)
      CHAT_REALTIME_ADDR=127.0.0.1:$p2 "$bin/chat-realtime" >"$out/$tag.ws2.log" 2>&1 &
      pids+=($!)
      CHAT_GATEWAY_ADDR=127.0.0.1:$pp "$bin/chat-gateway" >"$out/$tag.pub.log" 2>&1 &
      pids+=($!)
      lt_args=(--dialect chat --encoding json --api-key bench-key
        --target "ws://127.0.0.1:$p1/ws,ws://127.0.0.1:$p2/ws" --http "http://127.0.0.1:$pp")
      wait_port "$pp" chat-gateway
      ;;
    bun)
      (cd "$here" && PORT=$p1 REDIS_URL=$redis exec "$BUN" bun-server.js) >"$out/$tag.ws1.log" 2>&1 &
      pids+=($!)
      (cd "$here" && PORT=$p2 REDIS_URL=$redis exec "$BUN" bun-server.js) >"$out/$tag.ws2.log" 2>&1 &
      pids+=($!)
      # Bun's servers take the backend's POST /publish themselves (round-robin).
      lt_args=(--dialect bun
        --target "ws://127.0.0.1:$p1/ws,ws://127.0.0.1:$p2/ws"
        --http "http://127.0.0.1:$p1,http://127.0.0.1:$p2")
      ;;
    socketio)
      (cd "$here" && PORT=$p1 REDIS_URL=$redis exec node socketio-server.js) >"$out/$tag.ws1.log" 2>&1 &
      pids+=($!)
      (cd "$here" && PORT=$p2 REDIS_URL=$redis exec node socketio-server.js) >"$out/$tag.ws2.log" 2>&1 &
      pids+=($!)
      (cd "$here" && PORT=$pp REDIS_URL=$redis exec node socketio-publisher.js) >"$out/$tag.pub.log" 2>&1 &
      pids+=($!)
      lt_args=(--dialect socketio
        --target "ws://127.0.0.1:$p1/socket.io/,ws://127.0.0.1:$p2/socket.io/"
        --http "http://127.0.0.1:$pp")
      wait_port "$pp" socketio-publisher
      ;;
    *) say "unknown system $sys"; exit 64 ;;
  esac
  wait_port "$p1" "$sys server 1"
  wait_port "$p2" "$sys server 2"
  sleep 0.5
}

# --- scenarios -----------------------------------------------------------------------
# id|label|chat-loadtest arguments
if [ "$quick" = 1 ]; then
  d=2s settle=500ms idle_conns=1000 fan_members=100 rooms=20
else
  d=20s settle=3s idle_conns=10000 fan_members=1000 rooms=200
fi
scenarios=(
  "fan100|${fan_members}-member room, 100 msg/s|fanout --members $fan_members --rate 100"
  "fan250|same, 250 msg/s|fanout --members $fan_members --rate 250"
  "fan1000|same, 1,000 msg/s|fanout --members $fan_members --rate 1000"
  "fan1500|same, 1,500 msg/s|fanout --members $fan_members --rate 1500"
  "rooms|$rooms rooms of 10, 1,000 msg/s|rooms --rooms $rooms --members 10 --rate 1000 --publish http"
  "roomsws|$rooms rooms of 10, 1,000 msg/s, members send over WebSocket|rooms --rooms $rooms --members 10 --rate 1000 --publish ws"
  "idle|idle KiB per connection ($idle_conns)|idle --connections $idle_conns --members 10"
)
IFS=, read -r -a syslist <<<"$systems"

broken=0
say "output in $out; $runs run(s) of ${#scenarios[@]} scenarios on: ${syslist[*]}"
for run in $(seq 1 "$runs"); do
  for sc in "${scenarios[@]}"; do
    IFS='|' read -r id label largs <<<"$sc"
    # Interleaved: each run starts the scenario with another system.
    n=${#syslist[@]}
    for i in $(seq 0 $((n - 1))); do
      sys=${syslist[$(((i + run - 1) % n))]}
      tag="$id.$sys.$run"
      start "$sys" "$tag"
      server_pids=()
      for p in "${pids[@]}"; do server_pids+=(--server-pid "$p"); done
      say "run $run: $id on $sys"
      set +e
      # shellcheck disable=SC2086
      "$bin/chat-loadtest" $largs --duration "$d" --settle "$settle" "${lt_args[@]}" \
        "${server_pids[@]}" --json --quiet >"$out/$tag.json" 2>"$out/$tag.err" &
      lt_pid=$!
      wait "$lt_pid"
      code=$?
      lt_pid=""
      set -e
      echo "$code" >"$out/$tag.exit"
      if [ "$code" != 0 ] && [ "$code" != 3 ]; then
        say "  exit $code: $(tail -1 "$out/$tag.err")"
        broken=$((broken + 1))
      fi
      stop_all
    done
  done
done

# --- table ---------------------------------------------------------------------------
machine="$(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2), Bun $("$BUN" --version), Node $(node --version), $(redis-server --version | cut -d' ' -f1-3)"
commit=$(cd "$root" && git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)
command="loadtest/peers/compare.sh"
[ "$quick" = 1 ] && command="$command --quick"
[ "$runs" != 3 ] && [ "$quick" = 0 ] && command="$command --runs $runs"
[ "$systems" != "chat,bun,socketio" ] && command="$command --systems $systems"

python3 - "$out" "$runs" "$systems" "$machine" "$commit" "$command" "$(date -u +%Y-%m-%d)" \
  "${scenarios[@]}" >"$out/table.md" <<'PY'
import json, os, statistics, sys
out, runs, systems, machine, commit, command, day = sys.argv[1:8]
scen = [s.split("|") for s in sys.argv[8:]]
systems = systems.split(",")
names = {"chat": "chat", "bun": "Bun", "socketio": "Socket.IO"}
runs = int(runs)

def reports(sc, sys_):
    rs = []
    for run in range(1, runs + 1):
        p = os.path.join(out, f"{sc}.{sys_}.{run}.json")
        try:
            with open(p) as f:
                rs.append(json.load(f))
        except (OSError, ValueError):
            pass
    return rs

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def ms(us):
    if us is None: return "–"
    return f"{us/1e6:.1f} s" if us >= 1e6 else (f"{us/1e3:.0f} ms" if us >= 1e4 else f"{us/1e3:.1f} ms")

rows = []
head = ["scenario"] + [f"{names[s]} µs CPU/delivery" for s in systems] + [f"{names[s]} p99" for s in systems] + ["lost (" + " / ".join(names[s] for s in systems) + ")"]
rows.append("| " + " | ".join(head) + " |")
rows.append("|" + "---|" + "---:|" * (len(head) - 1))
for sc, label, _ in scen:
    cpu, p99, lost = [], [], []
    for s in systems:
        rs = reports(sc, s)
        if not rs:
            cpu.append("–"); p99.append("–"); lost.append("–"); continue
        idle = sc == "idle"
        if idle:
            v = med([(r.get("server") or {}).get("kib_per_connection") for r in rs])
            cpu.append("–" if v is None else f"{v:.1f} KiB")
            p99.append(""); lost.append("")
            failed = sum(r["connections"]["failed"] + r["connections"]["dropped"] for r in rs)
            if failed: cpu[-1] += f" ({failed} conns failed)"
            continue
        v = med([(r.get("server") or {}).get("cpu_us_per_delivery") for r in rs])
        p = med([r["latency"]["p99_us"] for r in rs])
        behind = p is not None and p >= 1e6
        cpu.append(("–" if v is None else f"{v:.2f}") + (" (falls behind)" if behind else ""))
        p99.append(ms(p))
        l = [r["messages"]["lost"] for r in rs]
        lost.append(str(max(l)))
    if sc == "idle":
        rows.append("| " + " | ".join([label] + cpu + [""] * len(systems) + [""]) + " |")
    else:
        rows.append("| " + " | ".join([label] + cpu + p99 + [" / ".join(lost)]) + " |")

print(f"Measured {day} at commit `{commit}` with `{command}` ({runs} run{'s' if runs != 1 else ''} "
      "per scenario and system, interleaved; the medians). Machine: " + machine + ".")
print()
print("\n".join(rows))
print()
print("Server CPU is every server-side process of the system during the load (2 WebSocket "
      "servers, the publisher: chat-gateway or Socket.IO's redis-emitter endpoint, and Redis; "
      "Bun's servers take the HTTP publishes themselves) divided by the deliveries. Rows publish "
      "over HTTP on an open-loop schedule unless they say otherwise; p99 is receive time minus "
      "intended send time. \"Falls behind\": the median p99 is 1 s or more. Lost is the worst "
      "run: chat is checked by seq (every seq once, in order, to each member); Bun and Socket.IO "
      "have no seqs and are checked by the stamps' message indices (each message once to each "
      "member of its room, in any order). Idle: growth of those processes' RSS per connection "
      "while the connections (rooms of 10) connected and joined.")
PY

cat "$out/table.md"
if [ "$broken" -gt 0 ]; then
  say "$broken run(s) could not be carried out (see $out/*.err): no benchmarks file written"
  exit 1
fi
if [ "$write" = 1 ]; then
  python3 - "$benchmarks" "$out/table.md" <<'PY'
import sys
path, table = sys.argv[1], open(sys.argv[2]).read().strip()
begin, end = "<!-- peers-compare:begin -->", "<!-- peers-compare:end -->"
text = open(path).read()
if begin not in text or end not in text:
    sys.exit(f"compare.sh: {path} has no {begin} … {end} section")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
note = "<!-- written by loadtest/peers/compare.sh: do not edit by hand -->"
open(path, "w").write(f"{head}{begin}\n{note}\n\n{table}\n\n{end}{tail}")
PY
  say "wrote the table into $benchmarks"
fi
say "reports and logs: $out"
