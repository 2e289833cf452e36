#!/usr/bin/env bash
# Gateway-overhead benchmark. wrk POSTs the same chat request to three targets in turn, all in front
# of the same static upstream (nginx):
#   direct   wrk -> nginx
#   floor    wrk -> bare Starlette + uvicorn + aiohttp pass-through (bench/passthrough.py) -> nginx
#   gateway  wrk -> FareGate (one process, SQLite ledger on) -> nginx
# at concurrency 1 and 16, BENCH_REPEAT times interleaved; then a ledger check and BENCHMARKS.md.
# Run from anywhere: `make bench` (or `bash bench/run.sh`).
#
#   BENCH_DURATION=10   seconds per measured run
#   BENCH_WARMUP=3      seconds of warm-up per target (concurrency 16) before its first run
#   BENCH_REPEAT=3      rounds of (direct, floor, gateway) x (c1, c16); the report takes medians
#   BENCH_FLOOR=1       0: skip the bare pass-through
#   BENCH_PROFILE=0     1: also profile the gateway with py-spy under wrk -c16 (installs py-spy into .venv)
#   BENCH_STRICT=0      1: exit 1 when a goal is not met (failed requests or a ledger mismatch always do)
#   BENCH_MARKDOWN=BENCHMARKS.md   the file whose marked blocks are replaced
#
# Raw outputs stay in bench/results/ (git-ignored). Everything started here is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
FAREGATE=$ROOT/.venv/bin/faregate
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
REPEAT=${BENCH_REPEAT:-3}
FLOOR=${BENCH_FLOOR:-1}
PROFILE=${BENCH_PROFILE:-0}
STRICT=${BENCH_STRICT:-0}
MARKDOWN=${BENCH_MARKDOWN:-$ROOT/BENCHMARKS.md}
RESULTS=$ROOT/bench/results
HARNESS=$ROOT/bench/harness.py

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x $PY && -x $FAREGATE ]] || die "no .venv with faregate installed: run 'make bench' (or 'make test') first"
for n in "$DURATION" "$WARMUP" "$REPEAT"; do
  [[ $n =~ ^[0-9]+$ ]] || die "BENCH_DURATION, BENCH_WARMUP and BENCH_REPEAT are whole numbers"
done
((DURATION > 0 && REPEAT > 0)) || die "BENCH_DURATION and BENCH_REPEAT must be at least 1"

# --- tools -----------------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if ((${#missing[@]})); then
  SUDO=()
  [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
  log "installing ${missing[*]} with apt-get"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- clean-up, whatever happens ----------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/faregate-bench.XXXXXX")
NGINX_PID="" GATEWAY_PID="" FLOOR_PID="" WRK_PID="" MONITOR_PID=""

stop() {  # stop PID [signal] [seconds]: signal it, wait (bounded), then SIGKILL
  local pid=$1 sig=${2:-TERM} limit=${3:-10} i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "$WRK_PID" TERM 2
  stop "$MONITOR_PID" TERM 5
  stop "$GATEWAY_PID" TERM 30
  stop "$FLOOR_PID" TERM 10
  stop "$NGINX_PID" QUIT 5
  if ((rc != 0)); then
    for f in gateway.log floor.log nginx-error.log; do
      [[ -s $TMP/$f ]] && { log "last lines of $f:"; tail -n 20 "$TMP/$f" >&2; }
    done
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.txt "$RESULTS"/*.json "$RESULTS"/*.cpu "$RESULTS"/profile.*
: >"$RESULTS/commands.txt"

cpu_ticks() {  # user + system clock ticks of a process, all its threads
  local stat
  stat=$(<"/proc/$1/stat")
  local -a f=(${stat##*) })  # the fields after "(comm) ": f[11] is utime, f[12] stime
  echo $((f[11] + f[12]))
}

# --- upstream: nginx with a static chat.completion ------------------------------------------------------
NGINX_PORT=$("$PY" "$HARNESS" free-port)
"$PY" "$HARNESS" nginx-conf bench/nginx.conf bench/upstream_response.json "$TMP" "$NGINX_PORT" >"$TMP/nginx.conf"
"$NGINX" -t -q -p "$TMP/" -c "$TMP/nginx.conf" 2>"$TMP/nginx-error.log" || die "nginx rejected its config"
"$NGINX" -p "$TMP/" -c "$TMP/nginx.conf" >>"$TMP/nginx-error.log" 2>&1 &
NGINX_PID=$!
DIRECT_URL=http://127.0.0.1:$NGINX_PORT/v1/chat/completions
# GET answers 200 too (`return` ignores the method), which makes a fine readiness check.
"$PY" "$HARNESS" wait "$DIRECT_URL" --pid "$NGINX_PID" --timeout 20
log "nginx (pid $NGINX_PID) on 127.0.0.1:$NGINX_PORT"

# --- the floor: bare pass-through ----------------------------------------------------------------------
TARGETS=(direct)
if [[ $FLOOR == 1 ]]; then
  FLOOR_PORT=$("$PY" "$HARNESS" free-port)
  "$PY" bench/passthrough.py --upstream "http://127.0.0.1:$NGINX_PORT/v1" --port "$FLOOR_PORT" >"$TMP/floor.log" 2>&1 &
  FLOOR_PID=$!
  FLOOR_URL=http://127.0.0.1:$FLOOR_PORT/v1/chat/completions
  "$PY" "$HARNESS" wait "http://127.0.0.1:$FLOOR_PORT/healthz" --pid "$FLOOR_PID" --timeout 60
  log "pass-through (pid $FLOOR_PID) on 127.0.0.1:$FLOOR_PORT"
  TARGETS+=(floor)
fi

# --- FareGate: one process, SQLite ledger in the temp dir ------------------------------------------------
GATEWAY_PORT=$("$PY" "$HARNESS" free-port)
DB=$TMP/ledger.db
"$PY" "$HARNESS" gateway-conf "$NGINX_PORT" "$DB" >"$TMP/faregate.yaml"
(cd "$TMP" && exec "$FAREGATE" serve --config "$TMP/faregate.yaml" --port "$GATEWAY_PORT") >"$TMP/gateway.log" 2>&1 &
GATEWAY_PID=$!
GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions
"$PY" "$HARNESS" wait "http://127.0.0.1:$GATEWAY_PORT/healthz" --pid "$GATEWAY_PID" --timeout 60
log "faregate (pid $GATEWAY_PID) on 127.0.0.1:$GATEWAY_PORT"
"$PY" "$HARNESS" probe "$GATEWAY_URL" >&2
PROBES=1
TARGETS+=(gateway)

url_of() { case $1 in direct) echo "$DIRECT_URL" ;; floor) echo "$FLOOR_URL" ;; gateway) echo "$GATEWAY_URL" ;; esac; }
pid_of() { case $1 in floor) echo "$FLOOR_PID" ;; gateway) echo "$GATEWAY_PID" ;; *) echo "" ;; esac; }

# --- wrk ----------------------------------------------------------------------------------------------
bench() {  # bench TARGET NAME CONNECTIONS SECONDS: one wrk run into results/NAME.txt (+ NAME.cpu)
  local target=$1 name=$2 conns=$3 secs=$4 pid before
  local threads=$((conns < 2 ? 1 : 2))
  local cmd=(wrk "-t$threads" "-c$conns" "-d${secs}s" --latency -s bench/post.lua "$(url_of "$target")")
  pid=$(pid_of "$target")
  if [[ $name == *-r1 ]]; then
    echo "${cmd[*]}" | sed -E "s#127\.0\.0\.1:[0-9]+#127.0.0.1:${target^^}_PORT#" >>"$RESULTS/commands.txt"
  fi
  log "$name: ${cmd[*]}"
  [[ -n $pid ]] && before=$(cpu_ticks "$pid")
  "${cmd[@]}" >"$RESULTS/$name.txt" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || die "wrk failed for $name: $(tail -n 5 "$RESULTS/$name.txt")"
  WRK_PID=""
  if [[ -n $pid ]]; then
    kill -0 "$pid" 2>/dev/null || die "$target died during $name"
    echo "$(($(cpu_ticks "$pid") - before)) $(getconf CLK_TCK)" >"$RESULTS/$name.cpu"
  fi
}

if ((WARMUP > 0)); then
  for target in "${TARGETS[@]}"; do bench "$target" "$target-warmup" 16 "$WARMUP"; done
fi
"$PY" "$HARNESS" cpu-monitor --root $$ --out "$RESULTS/noise.json" &
MONITOR_PID=$!
for ((r = 1; r <= REPEAT; r++)); do
  for c in 1 16; do
    for target in "${TARGETS[@]}"; do bench "$target" "$target-c$c-r$r" "$c" "$DURATION"; done
  done
done
stop "$MONITOR_PID" TERM 5
MONITOR_PID=""
GATEWAY_RUNS=("$RESULTS"/gateway-*.txt)
IN_FLIGHT=$((REPEAT * (1 + 16) + (WARMUP > 0 ? 16 : 0)))
stop "$FLOOR_PID" TERM 10
FLOOR_PID=""

# --- optional profile under load ---------------------------------------------------------------------
if [[ $PROFILE == 1 ]]; then
  SPY=$ROOT/.venv/bin/py-spy
  [[ -x $SPY ]] || { log "installing py-spy into .venv"; "$ROOT/.venv/bin/pip" install -q py-spy; }
  # wrk runs 2 s longer than the recording, which starts 1 s in: only steady load is sampled.
  log "profile: py-spy record for ${DURATION}s while wrk -t2 -c16 runs"
  wrk -t2 -c16 -d$((DURATION + 2))s --latency -s bench/post.lua "$GATEWAY_URL" >"$RESULTS/profile-gateway-c16.txt" 2>&1 &
  WRK_PID=$!
  sleep 1
  # --nonblocking samples without pausing the gateway, so the profiler barely slows what it measures.
  "$SPY" record --pid "$GATEWAY_PID" --rate 250 --nonblocking --function --format raw \
    --output "$RESULTS/profile.raw" --duration "$DURATION" >"$TMP/py-spy.log" 2>&1 \
    || die "py-spy failed: $(tail -n 5 "$TMP/py-spy.log")"
  wait "$WRK_PID" || die "wrk failed during the profile: $(tail -n 5 "$RESULTS/profile-gateway-c16.txt")"
  WRK_PID=""
  GATEWAY_RUNS+=("$RESULTS/profile-gateway-c16.txt")
  IN_FLIGHT=$((IN_FLIGHT + 16))
  "$PY" bench/profile_summary.py "$RESULTS/profile.raw" --rate 250 --seconds "$DURATION" \
    --wrk "$RESULTS/profile-gateway-c16.txt" --output "$RESULTS/profile.md" >/dev/null
fi

# --- ledger: one row per completed request, after a graceful stop --------------------------------------
log "stopping the gateway with SIGTERM (it drains the ledger before exiting)"
kill -TERM "$GATEWAY_PID"
for ((i = 0; i < 600; i++)); do
  kill -0 "$GATEWAY_PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$GATEWAY_PID" 2>/dev/null && die "the gateway did not exit within 60 s of SIGTERM"
# uvicorn re-raises the SIGTERM it handled once it has shut down, hence 143 on a clean exit.
wait "$GATEWAY_PID" || { rc=$?; ((rc == 143)) || log "the gateway exited with status $rc"; }
GATEWAY_PID=""
EXPECTED=$(($("$PY" bench/report.py count "${GATEWAY_RUNS[@]}") + PROBES))
LEDGER_RC=0
"$PY" "$HARNESS" ledger "$DB" --expected "$EXPECTED" --in-flight "$IN_FLIGHT" --json "$RESULTS/ledger.json" >&2 \
  || LEDGER_RC=$?

# --- report -------------------------------------------------------------------------------------------
COMMAND="make bench"
settings=()
[[ $DURATION != 10 ]] && settings+=("BENCH_DURATION=$DURATION")
[[ $WARMUP != 3 ]] && settings+=("BENCH_WARMUP=$WARMUP")
[[ $REPEAT != 3 ]] && settings+=("BENCH_REPEAT=$REPEAT")
[[ $FLOOR != 1 ]] && settings+=("BENCH_FLOOR=$FLOOR")
[[ $PROFILE == 1 ]] && settings+=("BENCH_PROFILE=1")
((${#settings[@]})) && COMMAND="${settings[*]} $COMMAND"
"$PY" - "$RESULTS/meta.json" "$COMMAND" "$DURATION" "$WARMUP" "$REPEAT" <<'EOF'
import json, sys
from datetime import datetime, timezone
path, command, duration, warmup, repeat = sys.argv[1:]
meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": command,
        "duration_s": int(duration), "warmup_s": int(warmup), "repeat": int(repeat)}
open(path, "w").write(json.dumps(meta, indent=2) + "\n")
EOF
STRICT_FLAG=()
[[ $STRICT == 1 ]] && STRICT_FLAG=(--strict)
"$PY" bench/report.py write "$RESULTS" --markdown "$MARKDOWN" "${STRICT_FLAG[@]}"
exit $((LEDGER_RC))
