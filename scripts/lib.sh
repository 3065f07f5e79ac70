# Shared helpers of the load scripts (sourced). The caller sets $work (a
# temporary directory), $db (a database name to drop at exit) and
# $RUN_LIMIT (how long any started process may live, e.g. 30m).
# shellcheck shell=bash

pids=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	dropdb --if-exists --force "$db" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# start NAME CMD...: in the background, logs appended to $work/NAME.log,
# bounded by $RUN_LIMIT so nothing outlives a stuck script. Sets $last_pid;
# every started process is killed at exit.
start() {
	local name=$1; shift
	timeout --signal=KILL "$RUN_LIMIT" "$@" >>"$work/$name.log" 2>&1 &
	last_pid=$!
	pids+=("$last_pid")
}

wait_http() { # URL
	local i
	for i in $(seq 1 300); do
		curl -fs -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	log "timed out waiting for $1"; exit 1
}

wait_tcp() { # PORT
	local i
	for i in $(seq 1 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.2
	done
	log "timed out waiting for port $1"; exit 1
}

# kill9 PID: SIGKILL a process started with start. The pid is timeout's,
# which cannot pass SIGKILL on, so its child is killed first.
kill9() {
	pkill -KILL -P "$1" 2>/dev/null || true
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# stage NAME PORT STAGE: start a pipeline stage of $bin with its HTTP server
# on PORT and wait until it is ready.
stage() {
	start "$1" "$bin" "$3" --http-addr "127.0.0.1:$2"
	wait_http "http://127.0.0.1:$2/readyz"
}
