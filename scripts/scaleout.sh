#!/usr/bin/env bash
# scaleout.sh — does a second fetcher process double the throughput when the
# Mockstagram API's latency is the bound? (SPEC §6: 2 fetchers >= 1.8x one.)
#
# Everything on loopback, bounded, and killed on exit: the broker (BROKER=kafka:
# a Kafka-protocol dev broker, kfake; BROKER=postgres: the work queue in the
# run's database), a fresh PostgreSQL database on the local server, the
# deterministic simulator with --latency, then 1 scheduler, 2 recorders,
# 1 api and fetchers capped at --fetch-concurrency in-flight requests each.
# It measures MINUTES full minutes with one fetcher, starts a second fetcher,
# skips the minute of the rebalance, measures MINUTES more, and prints
# samples/s of each configuration (stored samples per minute, from the
# database) and the ratio.
#
# The registry must be larger than what even two fetchers can fetch in a
# minute, or the two-fetcher run is bounded by the registry, not the API:
# one fetcher does at most CONCURRENCY / LATENCY = 32 / 50 ms = 640 req/s
# (38,400 a minute), two 76,800 a minute; the default is 90,000 pks.
#
# Usage: scripts/scaleout.sh            (about 2*MINUTES + 3 minutes)
# Env:   MINUTES=2 PKS=90000 LATENCY=50ms CONCURRENCY=32 SHARDS=1024 BROKER=kafka|postgres
#
# The adaptive concurrency limit is off: each fetcher holds exactly
# CONCURRENCY requests in flight, so the API's latency is the bound.
#        PGHOST=127.0.0.1 PGPORT=5432 PGUSER=root BASE_PORT=19100
set -euo pipefail

MINUTES=${MINUTES:-2}
PKS=${PKS:-90000}
LATENCY=${LATENCY:-50ms}
CONCURRENCY=${CONCURRENCY:-32}
SHARDS=${SHARDS:-1024}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-root}
BASE_PORT=${BASE_PORT:-19100}
BROKER=${BROKER:-kafka}
FIRST=1000000
LAST=$((FIRST + PKS - 1))

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mockstagram-scaleout.XXXXXX)
db=mockstagram_scaleout_$$
RUN_LIMIT=30m
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

# sleep_until EPOCH: line up with a minute boundary (wall clock).
sleep_until() {
	local d
	d=$(awk -v t="$1" -v now="$(date +%s.%N)" 'BEGIN { d = t - now; print (d > 0 ? d : 0) }')
	sleep "$d"
}
next_minute() { echo $(( ($(date +%s) / 60 + 1) * 60 )); }

sql() { psql -X -qAt -d "$db" -c "$1"; }

log "building mockstagram"
(cd "$root" && go build -o "$work/mockstagram" ./cmd/mockstagram)
bin=$work/mockstagram

if [ "$BROKER" = kafka ]; then
	kafka=127.0.0.1:$BASE_PORT
	start kafka-dev "$bin" kafka-dev --addr "$kafka"
	wait_tcp "$BASE_PORT"
	export MOCKSTAGRAM_KAFKA_BROKERS=$kafka
fi

api=127.0.0.1:$((BASE_PORT + 1))
start simulator "$bin" simulate --mode deterministic --addr "$api" --range "$FIRST-$LAST" --latency "$LATENCY"
wait_http "http://$api/api/v1/influencers/$FIRST"

createdb "$db"
export MOCKSTAGRAM_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"
export MOCKSTAGRAM_BROKER=$BROKER MOCKSTAGRAM_API_URL=http://$api MOCKSTAGRAM_FETCH_ADAPTIVE=false
export MOCKSTAGRAM_SHARDS=$SHARDS MOCKSTAGRAM_FETCH_CONCURRENCY=$CONCURRENCY MOCKSTAGRAM_REGISTRY_BOOTSTRAP=
export MOCKSTAGRAM_LOG_LEVEL=warn
"$bin" migrate >/dev/null
"$bin" registry add --range "$FIRST-$LAST" >/dev/null
log "database $db: $PKS pks tracked; broker $BROKER; simulator latency $LATENCY; fetch concurrency $CONCURRENCY per fetcher"

stage recorder-1 $((BASE_PORT + 2)) recorder
stage recorder-2 $((BASE_PORT + 3)) recorder
stage api $((BASE_PORT + 4)) api
stage fetcher-1 $((BASE_PORT + 5)) fetcher
stage scheduler $((BASE_PORT + 6)) scheduler

stored() { # FROM_EPOCH TO_EPOCH
	sql "SELECT count(*) FROM samples WHERE minute >= to_timestamp($1) AND minute < to_timestamp($2)"
}
per_minute() { # FROM_EPOCH TO_EPOCH
	sql "SELECT to_char(m, 'HH24:MI') || '  stored ' || s || '  missed ' || x FROM (
	       SELECT g AS m,
	              (SELECT count(*) FROM samples WHERE minute = g) AS s,
	              (SELECT count(*) FROM missed WHERE minute = g) AS x
	       FROM generate_series(to_timestamp($1), to_timestamp($2) - interval '1 minute', interval '1 minute') AS g) q" |
		sed 's/^/    /' >&2
}

one_from=$(next_minute)
one_to=$((one_from + MINUTES * 60))
log "1 fetcher: measuring $MINUTES minute(s) from $(date -u -d "@$one_from" +%H:%M)"
sleep_until "$one_to"

stage fetcher-2 $((BASE_PORT + 7)) fetcher
two_from=$(next_minute) # the minute of the rebalance is skipped
two_to=$((two_from + MINUTES * 60))
log "2 fetchers: measuring $MINUTES minute(s) from $(date -u -d "@$two_from" +%H:%M)"
sleep_until "$two_to"
sleep 15 # the last minute's results: every task expires at the minute's end

one=$(stored "$one_from" "$one_to")
two=$(stored "$two_from" "$two_to")
log "1 fetcher, per minute:"; per_minute "$one_from" "$one_to"
log "2 fetchers, per minute:"; per_minute "$two_from" "$two_to"
dups=$(sql "SELECT count(*) FROM (SELECT 1 FROM samples GROUP BY pk, minute HAVING count(*) > 1) d")
bad=$(sql "SELECT count(*) FROM influencer_summary s WHERE samples <> (SELECT count(*) FROM samples x WHERE x.pk = s.pk)")
secs=$((MINUTES * 60))
awk -v broker="$BROKER" -v one="$one" -v two="$two" -v secs="$secs" -v pks="$PKS" -v lat="$LATENCY" -v c="$CONCURRENCY" -v dups="$dups" -v bad="$bad" 'BEGIN {
	printf "broker %s, registry %d pks, API latency %s, %d in flight per fetcher, %d s measured per configuration\n", broker, pks, lat, c, secs
	printf "1 fetcher : %9d samples  %8.1f samples/s\n", one, one / secs
	printf "2 fetchers: %9d samples  %8.1f samples/s\n", two, two / secs
	printf "ratio     : %.2f\n", (one > 0 ? two / one : 0)
	printf "duplicate (pk, minute): %d; summaries whose sample count differs from their stored minutes: %d\n", dups, bad
}'
