#!/usr/bin/env bash
# chaos.sh — the chaos run of SPEC §7 with real processes in real time.
#
# Everything on loopback, bounded, and killed on exit: a fresh PostgreSQL
# database on the local server, the deterministic simulator with 10 % 5xx,
# 5 % 429 (Retry-After 1 s) and 2 % latency spikes of 3 s, then one
# scheduler, one fetcher and one recorder as separate processes on the
# configured broker (BROKER, default kafka via kafka-dev), plus the suspicion
# checker with its round shortened to SUSPICION_INTERVAL (default 1m; the
# simulator answers is_suspicious in 1-10 s, with the same faults). The
# recorder is killed with SIGKILL every KILL_EVERY seconds and restarted at once. After MINUTES full minutes (plus a grace for
# the recorder to catch up) scripts/chaoscheck compares the database with
# simulator.Counts: stored fraction (>= 99.9 %), duplicates, wrong values,
# pks neither stored nor missed, summaries, and that every pk got an
# is_suspicious answer during the run. Exit status is chaoscheck's.
#
# Usage: scripts/chaos.sh                 (about MINUTES + 2 minutes)
# Env:   MINUTES=5 PKS=1000 SHARDS=64 KILL_EVERY=40 CONCURRENCY=64 BROKER=kafka|postgres
#        SUSPICION_INTERVAL=1m SUSPICION_CONCURRENCY=2048 (SUSPICION_INTERVAL= turns the checker off)
#        PGHOST=127.0.0.1 PGPORT=5432 PGUSER=root BASE_PORT=19300
set -euo pipefail

MINUTES=${MINUTES:-5}
PKS=${PKS:-1000}
SHARDS=${SHARDS:-64}
BROKER=${BROKER:-kafka} # kafka (kfake via 'mockstagram kafka-dev') or postgres
KILL_EVERY=${KILL_EVERY:-40}
CONCURRENCY=${CONCURRENCY:-64}
SUSPICION_INTERVAL=${SUSPICION_INTERVAL-1m}
SUSPICION_CONCURRENCY=${SUSPICION_CONCURRENCY:-2048}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-root}
BASE_PORT=${BASE_PORT:-19300}
FIRST=1000000
LAST=$((FIRST + PKS - 1))

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mockstagram-chaos.XXXXXX)
db=mockstagram_chaos_$$
RUN_LIMIT=$((MINUTES + 10))m
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

log "building"
bin=$work/mockstagram
(cd "$root" && go build -o "$bin" ./cmd/mockstagram && go build -o "$work/chaoscheck" ./scripts/chaoscheck)

api=127.0.0.1:$BASE_PORT
start simulator "$bin" simulate --mode deterministic --addr "$api" --range "$FIRST-$LAST" \
	--error-rate 0.10 --rate-limit-rate 0.05 --retry-after 1s --spike-rate 0.02 --spike-latency 3s --seed 7

createdb "$db"
export MOCKSTAGRAM_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"
if [ "$BROKER" = kafka ]; then
	kafka=127.0.0.1:$((BASE_PORT + 9))
	start kafka-dev "$bin" kafka-dev --addr "$kafka"
	export MOCKSTAGRAM_KAFKA_BROKERS=$kafka
fi
export MOCKSTAGRAM_BROKER=$BROKER MOCKSTAGRAM_API_URL=http://$api MOCKSTAGRAM_REGISTRY_BOOTSTRAP=
export MOCKSTAGRAM_SHARDS=$SHARDS MOCKSTAGRAM_FETCH_CONCURRENCY=$CONCURRENCY
if [ -n "$SUSPICION_INTERVAL" ]; then
	export MOCKSTAGRAM_SUSPICION_INTERVAL=$SUSPICION_INTERVAL MOCKSTAGRAM_SUSPICION_CONCURRENCY=$SUSPICION_CONCURRENCY
fi
export MOCKSTAGRAM_POSTGRES_POLL_INTERVAL=100ms MOCKSTAGRAM_LOG_LEVEL=warn MOCKSTAGRAM_LOG_FORMAT=text
"$bin" migrate >/dev/null
"$bin" registry add --range "$FIRST-$LAST" >/dev/null
wait_http "http://$api/api/v1/influencers/$FIRST"

stage recorder $((BASE_PORT + 1)) recorder; recorder_pid=$last_pid
stage fetcher $((BASE_PORT + 2)) fetcher
[ -n "$SUSPICION_INTERVAL" ] && stage suspicion $((BASE_PORT + 4)) suspicion
stage scheduler $((BASE_PORT + 3)) scheduler

# Measure from the next full minute.
now=$(date +%s)
from=$(( (now / 60 + 1) * 60 ))
to=$(( from + MINUTES * 60 ))
log "measuring $PKS pks x $MINUTES minutes from $(date -u -d @$from +%H:%M:%S); recorder SIGKILLed every ${KILL_EVERY}s"

kills=0
while [ "$(date +%s)" -lt "$to" ]; do
	sleep "$KILL_EVERY"
	[ "$(date +%s)" -ge "$to" ] && break
	kill9 "$recorder_pid"
	kills=$((kills + 1))
	log "recorder killed (#$kills), restarting"
	stage recorder $((BASE_PORT + 1)) recorder; recorder_pid=$last_pid
done
# Let the last minute's deadline pass and the recorder catch up.
sleep 30

fmt() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
log "checking (recorder killed $kills times)"
status=0
suspicion_since=
[ -n "$SUSPICION_INTERVAL" ] && suspicion_since=$(fmt "$from")
"$work/chaoscheck" --database-url "$MOCKSTAGRAM_DATABASE_URL" --pks "$FIRST-$LAST" --from "$(fmt $from)" --to "$(fmt $to)" \
	--suspicion-since "$suspicion_since" || status=$?
retries=$(curl -fsS "http://127.0.0.1:$((BASE_PORT + 2))/metrics" | awk '/^mockstagram_fetch_retries_total /{print $2}')
dlq=$(curl -fsS "http://127.0.0.1:$((BASE_PORT + 2))/metrics" | awk '/^mockstagram_dead_letters_total/{s+=$2} END{print s+0}')
echo "fetch retries $retries, fetcher dead letters $dlq, recorder kills $kills"
exit $status
