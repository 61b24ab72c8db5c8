#!/usr/bin/env bash
# The load benchmark matrix: every `tidings-bench load` scenario against Tidings standalone and
# the stock socket.io baseline (bench/baseline/server.mjs), and with --distributed also against
# one edge plus `processor all` on Kafka and Cassandra. Servers run on loopback, one at a time,
# started and stopped here; the generator runs on the same machine.
#
#   bench/run.sh --out results.jsonl [--quick] [--distributed]
#
#   --out FILE      every JSON record, one a line (readable lines go to stderr)
#   --quick         small counts, short runs (< 2 min): proves the harness works. It asserts
#                   no timing, only that every scenario produced a record with "ok": true.
#   --distributed   also run against edge + processors; needs `infra/services.sh start` first
#                   (Kafka on 127.0.0.1:9092, Cassandra on 127.0.0.1:9042); runs `tidings migrate`.
#
# Binaries: $CARGO_TARGET_DIR/release/{tidings,tidings-bench} (built here when missing).
# Node: `npm ci` in bench/baseline when node_modules is missing.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
QUICK=0
DISTRIBUTED=0
OUT=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --distributed) DISTRIBUTED=1 ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$OUT" ] || { echo "--out FILE is required" >&2; exit 2; }
: > "$OUT"

TIDINGS=$TARGET_DIR/release/tidings
LOADGEN=$TARGET_DIR/release/tidings-bench
if [ ! -x "$TIDINGS" ] || [ ! -x "$LOADGEN" ]; then
  (cd "$REPO" && cargo build --release -p tidings -p tidings-bench)
fi
if [ ! -d "$BENCH/baseline/node_modules/socket.io" ]; then
  (cd "$BENCH/baseline" && npm ci --no-audit --no-fund --loglevel=error)
fi

SECRET=bench-$RANDOM$RANDOM
# Multi-process idle: PER_ONE connections from each of two generators on one server process
# (the most one process may hold), and MANY_PROCS servers with PER_MANY each.
if [ $QUICK = 1 ]; then PER_ONE=200; MANY_PROCS=2; PER_MANY=200
else PER_ONE=9000; MANY_PROCS=4; PER_MANY=12500; fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until http://127.0.0.1:$1$2 answers 200 (at most $3 s).
wait_http() {
  local deadline=$((SECONDS + $3))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2" || true)" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { echo "no 200 from 127.0.0.1:$1$2 within $3 s" >&2; return 1; }
    sleep 0.2
  done
}

stop() {
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

# Server env for Tidings: the load needs far more than the default 20 events/s per connection,
# and it comes from a handful of loopback addresses, which the per-address caps (sized for
# one address being one household or office) would refuse.
TIDINGS_ENV=(TIDINGS_JWT_SECRET="$SECRET" TIDINGS_RATE_PER_SEC=100000 TIDINGS_RATE_BURST=100000
  TIDINGS_USER_RATE_PER_SEC=100000 TIDINGS_USER_RATE_BURST=100000
  TIDINGS_MAX_CONNS_PER_IP=0 TIDINGS_CONNECT_RATE_PER_IP=100000 TIDINGS_CONNECT_BURST_PER_IP=100000
  RUST_LOG=${RUST_LOG:-warn})

RECORDS=0
PARTS=$WORK/idle-parts.jsonl

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# idle_many TARGET LABEL PER_GENERATOR PORT:PID...
# One idle generator per PORT:PID, all at once, each holding PER_GENERATOR connections for the
# same time (a PORT:PID may repeat: several generators on one server, since one generator
# process is limited to ~19,000 sockets). Each server's RSS is read before any generator
# starts; each generator divides its server's growth by all connections on that server.
# Appends one record for the whole: connections held, and memory per connection averaged
# over the servers (the largest reading per server: the one taken with every generator up).
idle_many() {
  local target=$1 label=$2 per=$3; shift 3
  local specs=("$@") spec port pid i=0 gens=() failed=0
  declare -A before=() on_pid=()
  for spec in "${specs[@]}"; do
    pid=${spec##*:}
    [ -n "${before[$pid]:-}" ] || before[$pid]=$(rss_kb "$pid")
    on_pid[$pid]=$(( ${on_pid[$pid]:-0} + per ))
  done
  local hold=$([ $QUICK = 1 ] && echo 3 || echo 20)
  echo "== $label: idle, ${#specs[@]} generators x $per connections" >&2
  : > "$PARTS"
  for spec in "${specs[@]}"; do
    port=${spec%%:*}; pid=${spec##*:}
    timeout 600 "$LOADGEN" load idle --target "$target" --label "$label" \
      --url "ws://127.0.0.1:$port" --secret "$SECRET" --server-pid "$pid" \
      --connections "$per" --hold-secs "$hold" --id-offset $((i * per)) \
      --rss-before-kb "${before[$pid]}" --expect-total "${on_pid[$pid]}" >> "$PARTS" &
    gens+=($!)
    i=$((i + 1))
  done
  for pid in "${gens[@]}"; do wait "$pid" || failed=1; done
  jq -cs --arg target "$target" --arg lbl "$label" --argjson failed "$failed" \
    --argjson procs "$(printf '%s\n' "${!before[@]}" | wc -l)" '
    (group_by(.url) | map(max_by(.server_bytes_per_conn))) as $per_server
    | {scenario: "load.idle_many", target: $target, label: $lbl,
       server_processes: $procs, generators: length,
       connections: (map(.connections) | add), held: (map(.held) | add),
       server_bytes_per_conn: (($per_server | map(.server_bytes_per_conn) | add) / ($per_server | length) | round),
       per_server_bytes_per_conn: ($per_server | map(.server_bytes_per_conn)),
       ok: ($failed == 0 and all(.ok))}' "$PARTS" | tee -a "$OUT" | jq -r '"idle_many \(.label): \(.held)/\(.connections) held on \(.server_processes) process(es), \(.server_bytes_per_conn) bytes/conn"' >&2
  RECORDS=$((RECORDS + 1))
}

# run_matrix TARGET LABEL PORT PID...
run_matrix() {
  local target=$1 label=$2 port=$3; shift 3
  local pids=() pid
  for pid in "$@"; do pids+=(--server-pid "$pid"); done
  local common=(--target "$target" --label "$label" --url "ws://127.0.0.1:$port" --secret "$SECRET" "${pids[@]}")
  local scenario
  for scenario in idle connect-rate fanout latency catchup persistence-lag presence; do
    local args=("${common[@]}")
    [ $QUICK = 1 ] && args+=(--quick)
    echo "== $label: $scenario" >&2
    timeout 600 "$LOADGEN" load "$scenario" "${args[@]}" >> "$OUT"
    RECORDS=$((RECORDS + 1))
  done
}

# standalone_server NAME: a fresh `tidings standalone` on a free port (sets PORT and SERVER).
standalone_server() {
  PORT=$(free_port)
  env "${TIDINGS_ENV[@]}" TIDINGS_LISTEN=127.0.0.1:$PORT TIDINGS_DATA_DIR="$WORK/$1" \
    "$TIDINGS" standalone > "$WORK/$1.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  wait_http "$PORT" /readyz 60
}

# --- Tidings standalone ---
standalone_server standalone
run_matrix tidings standalone "$PORT" "$SERVER"
stop "$SERVER"
# The most one process holds: a fresh server, two generators at once.
standalone_server standalone-max
idle_many tidings standalone "$PER_ONE" "$PORT:$SERVER" "$PORT:$SERVER"
stop "$SERVER"

# --- the node baseline ---
# node_server: a fresh baseline server on a free port (sets PORT and SERVER).
node_server() {
  PORT=$(free_port)
  (cd "$BENCH/baseline" && PORT=$PORT JWT_SECRET=$SECRET exec node server.mjs) >> "$WORK/node.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  wait_http "$PORT" /healthz 30
}
node_server
run_matrix node baseline "$PORT" "$SERVER"
stop "$SERVER"
node_server
idle_many node baseline "$PER_ONE" "$PORT:$SERVER" "$PORT:$SERVER"
stop "$SERVER"
# Several processes: what a Node deployment would run for the same count.
SPECS=()
for _ in $(seq "$MANY_PROCS"); do
  node_server
  SPECS+=("$PORT:$SERVER")
done
idle_many node baseline "$PER_MANY" "${SPECS[@]}"
for spec in "${SPECS[@]}"; do stop "${spec##*:}"; done

# --- Tidings distributed: one edge and every processor in a second process ---
if [ $DISTRIBUTED = 1 ]; then
  DIST_ENV=("${TIDINGS_ENV[@]}" TIDINGS_KAFKA_BROKERS=${TIDINGS_KAFKA_BROKERS:-127.0.0.1:9092}
    TIDINGS_CASSANDRA=${TIDINGS_CASSANDRA:-127.0.0.1:9042} TIDINGS_CASSANDRA_KEYSPACE=tidings_bench)
  env "${DIST_ENV[@]}" "$TIDINGS" migrate >&2
  env "${DIST_ENV[@]}" TIDINGS_NODE_ID="bench-processors-$RANDOM" \
    TIDINGS_LISTEN=127.0.0.1:$(free_port) "$TIDINGS" processor all > "$WORK/processors.log" 2>&1 &
  PROCESSORS=$!
  PIDS+=("$PROCESSORS")
  SPECS=()
  for e in $(seq "$MANY_PROCS"); do
    PORT=$(free_port)
    env "${DIST_ENV[@]}" TIDINGS_NODE_ID="bench-edge-$e-$RANDOM" TIDINGS_LISTEN=127.0.0.1:$PORT \
      "$TIDINGS" edge > "$WORK/edge-$e.log" 2>&1 &
    PIDS+=($!)
    SPECS+=("$PORT:$!")
  done
  for spec in "${SPECS[@]}"; do wait_http "${spec%%:*}" /readyz 120; done
  # The matrix on the first edge (the others idle), then every edge at once.
  run_matrix tidings distributed "${SPECS[0]%%:*}" "${SPECS[0]##*:}" "$PROCESSORS"
  idle_many tidings distributed "$PER_MANY" "${SPECS[@]}"
  for spec in "${SPECS[@]}"; do stop "${spec##*:}"; done
  stop "$PROCESSORS"
fi

# Every scenario left one record; in --quick mode each must say "ok": true.
LINES=$(wc -l < "$OUT")
if [ "$LINES" -ne "$RECORDS" ]; then
  echo "expected $RECORDS records in $OUT, found $LINES" >&2
  exit 1
fi
if [ $QUICK = 1 ]; then
  BAD=$(jq -c 'select(.ok != true)' "$OUT")
  if [ -n "$BAD" ]; then
    echo "scenarios with errors:" >&2
    echo "$BAD" >&2
    exit 1
  fi
fi
echo "$RECORDS records in $OUT" >&2
