#!/usr/bin/env bash
# faults.sh — the fault-injection run of real processes (README "Reliability").
#
# Everything on loopback, bounded, and killed on exit. A fresh PostgreSQL
# database on the local server, reached by the stages only through
# scripts/faultproxy; the deterministic simulator as a hostile API (5 % 5xx,
# 2 % 429, 0.5 % 429 with Retry-After 99999999999999999, 0.2 % oversized
# bodies, 0.2 % 9 MiB response headers, 2 % latency spikes of 3 s); kafka-dev
# (kfake) as the broker; scheduler, fetcher, recorder and api as separate
# processes. Minute by minute from the next full minute:
#   1: fetcher   SIGKILLed at :30 and restarted at once
#   2: recorder  SIGKILLed at :30 and restarted at once
#   3: scheduler SIGKILLed at :30 and restarted SCHEDULER_DOWN s later (default 80:
#      the rest of minute 3 and part of 4 are never scheduled)
#   5: the database partitioned (proxy silent: connections hang, nothing is
#      reset) from :10 for PARTITION s (default 30)
#   6..MINUTES: undisturbed
# Then, per minute, scripts/chaoscheck: stored + missed = tracked exactly (no
# pk unaccounted), no duplicate (pk, minute), every value what the simulator
# served, summaries equal to the timeline; and every process's peak RSS under
# its target (scheduler 300 MB, fetcher, recorder 150 MB). Exit status 1 when
# any of that fails.
#
# Usage: scripts/faults.sh        (about MINUTES + 3 minutes)
# Env:   MINUTES=7 PKS=2000 SHARDS=64 SCHEDULER_DOWN=80 PARTITION=30 BASE_PORT=19400
#        PGHOST=127.0.0.1 PGPORT=5432 PGUSER=root
set -euo pipefail

MINUTES=${MINUTES:-7}
PKS=${PKS:-2000}
SHARDS=${SHARDS:-64}
SCHEDULER_DOWN=${SCHEDULER_DOWN:-80}
PARTITION=${PARTITION:-30}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-root}
BASE_PORT=${BASE_PORT:-19400}
FIRST=1000000
LAST=$((FIRST + PKS - 1))
[ "$MINUTES" -ge 6 ] || { echo "MINUTES must be at least 6" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mockstagram-faults.XXXXXX)
db=mockstagram_faults_$$
RUN_LIMIT=$((MINUTES + 10))m
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

log "building"
bin=$work/mockstagram
(cd "$root" && go build -o "$bin" ./cmd/mockstagram && go build -o "$work/chaoscheck" ./scripts/chaoscheck &&
	go build -o "$work/faultproxy" ./scripts/faultproxy)

api=127.0.0.1:$BASE_PORT
start simulator "$bin" simulate --mode deterministic --addr "$api" --range "$FIRST-$LAST" --seed 7 \
	--error-rate 0.05 --rate-limit-rate 0.02 --retry-after 1s --absurd-retry-after-rate 0.005 \
	--oversize-rate 0.002 --huge-header-rate 0.002 --spike-rate 0.02 --spike-latency 3s

proxy=127.0.0.1:$((BASE_PORT + 20))
control=http://127.0.0.1:$((BASE_PORT + 21))
start faultproxy "$work/faultproxy" --listen "$proxy" --target "$PGHOST:$PGPORT" --control "${control#http://}"
wait_tcp $((BASE_PORT + 20))

createdb "$db"
direct="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"
export MOCKSTAGRAM_DATABASE_URL="postgres://$PGUSER@$proxy/$db?sslmode=disable&connect_timeout=5"
kafka=127.0.0.1:$((BASE_PORT + 9))
start kafka-dev "$bin" kafka-dev --addr "$kafka"
export MOCKSTAGRAM_KAFKA_BROKERS=$kafka MOCKSTAGRAM_BROKER=kafka
export MOCKSTAGRAM_API_URL=http://$api MOCKSTAGRAM_REGISTRY_BOOTSTRAP=
export MOCKSTAGRAM_SHARDS=$SHARDS MOCKSTAGRAM_LOG_LEVEL=warn MOCKSTAGRAM_LOG_FORMAT=text
MOCKSTAGRAM_DATABASE_URL=$direct "$bin" migrate >/dev/null
MOCKSTAGRAM_DATABASE_URL=$direct "$bin" registry add --range "$FIRST-$LAST" >/dev/null
wait_http "http://$api/api/v1/influencers/$FIRST"

declare -A port=([recorder]=$((BASE_PORT + 1)) [fetcher]=$((BASE_PORT + 2)) [scheduler]=$((BASE_PORT + 3)) [api]=$((BASE_PORT + 4)))
declare -A pid peak
peak_of() { # PID: the process's peak RSS in MB (the child of timeout)
	local child
	child=$(pgrep -P "$1" | head -n1)
	awk '/^VmHWM/{printf "%d", $2/1024}' "/proc/${child:-$1}/status" 2>/dev/null || echo 0
}
note_peak() { # NAME
	local p
	p=$(peak_of "${pid[$1]}")
	if [ "${p:-0}" -gt "${peak[$1]:-0}" ]; then peak[$1]=$p; fi
}
up() { stage "$1" "${port[$1]}" "$1"; pid[$1]=$last_pid; }
kill_stage() { note_peak "$1"; kill9 "${pid[$1]}"; log "$1 SIGKILLed"; }
for s in recorder fetcher scheduler api; do up "$s"; done

now=$(date +%s)
from=$(((now / 60 + 1) * 60))
to=$((from + MINUTES * 60))
at() { # EPOCH: sleep until then
	local d=$(($1 - $(date +%s)))
	if [ "$d" -gt 0 ]; then sleep "$d"; fi
}
log "measuring $PKS pks x $MINUTES minutes from $(date -u -d @$from +%H:%M:%S)"

at $((from + 30)); kill_stage fetcher; up fetcher
at $((from + 90)); kill_stage recorder; up recorder
at $((from + 150)); kill_stage scheduler
sleep "$SCHEDULER_DOWN"; up scheduler; log "scheduler restarted"

at $((from + 250))
curl -fsS -X POST "$control/silent" >/dev/null; log "database partitioned (silent) for ${PARTITION}s"
sleep 5
ready=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:${port[scheduler]}/readyz" || true)
log "scheduler /readyz during the partition: $ready"
at $((from + 250 + PARTITION)); curl -fsS -X POST "$control/pass" >/dev/null; log "network back"

# Let the last minute's deadline pass, the recorder catch up and the
# reconciler account for every minute.
at $((to + 150)) # the reconciler: 90 s after a deadline, on its once-a-minute tick
for s in recorder fetcher scheduler api; do note_peak "$s"; done

fmt() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
status=0
"$work/chaoscheck" --database-url "$direct" --pks "$FIRST-$LAST" --from "$(fmt "$from")" --to "$(fmt "$to")" --min-stored 0.5 || status=$?
declare -A target=([scheduler]=300 [fetcher]=150 [recorder]=150)
for s in scheduler fetcher recorder; do
	verdict="ok, target ${target[$s]} MB"
	if [ "${peak[$s]}" -ge "${target[$s]}" ]; then verdict="OVER ${target[$s]} MB"; status=1; fi
	echo "peak RSS $s ${peak[$s]} MB ($verdict)"
done
echo "peak RSS api ${peak[api]} MB"
dlq=$(curl -fsS "http://127.0.0.1:${port[fetcher]}/metrics" | awk '/^mockstagram_dead_letters_total/{s+=$2} END{print s+0}')
echo "scheduler /readyz during the partition: $ready; fetcher dead letters since its restart: $dlq"
exit $status
