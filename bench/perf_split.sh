#!/usr/bin/env bash
# Where a server's CPU time goes under one workload: kernel, Python, extensions.
#
#   bench/perf_split.sh WORKLOAD SERVER_SCRIPT [FLAGS...]
#   bench/perf_split.sh reqresp bench/servers/tether_server.py --uvloop --callbacks
#   bench/perf_split.sh echo64k bench/servers/picows_server.py --uvloop
#
# WORKLOAD: reqresp (100 connections, 128 B), echo64k (32 in flight), connect50,
# fanout (1,000 receivers).
# Runs the server on CPU 0 and bench/.build/loadgen on CPU 1 (build it with one
# bench/run.py --quick first), records the server with `perf record` for 3 s
# in the middle of a 5 s load, and prints the share of samples per shared
# object. Needs Linux `perf` (Debian: linux-perf) and permission to attach.
# A diagnostic, not a benchmark: the rates it prints are under perf.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 4096
workload=$1
shift
case $workload in
    reqresp) args=(reqresp --conns 100 --size 128) ;;
    echo64k) args=(echo --conns 1 --inflight 32 --size 65536) ;;
    connect50) args=(connect --concurrency 50) ;;
    fanout) args=(fanout --conns 1000) ;;
    *) echo "unknown workload $workload" >&2; exit 2 ;;
esac
python=${PYTHON:-.venv/bin/python}
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$(mktemp -d)
taskset -c 0 "$python" "$@" "$port" >"$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do
    grep -q ready "$out/server.log" && break
    sleep 0.1
done
(sleep 1.5; perf record -q -p "$server" -o "$out/perf.data" -- sleep 3 >/dev/null 2>&1) &
recorder=$!
taskset -c 1 bench/.build/loadgen "${args[0]}" --port "$port" --duration 5 --warmup 1 "${args[@]:1}" | tail -1
wait "$recorder"
perf report -i "$out/perf.data" --no-children --sort "${PERF_SORT:-dso}" --stdio 2>/dev/null | grep "%" | grep -v "^#" | head -"${PERF_TOP:-8}"
