#!/usr/bin/env bash
# pg-tune.sh — the PostgreSQL server settings the pipeline's write load wants.
#
# At one million influencers a minute the store's working set (summary and
# its two indexes, the day's timeline index, the counters) is a few hundred
# MB, touched at random, and the write rate is ~15-35 MB of WAL a second.
# With the stock settings (shared_buffers 128MB, max_wal_size 1GB) the
# backends spend most of their CPU evicting dirty pages (3 writes and reads
# of 8 kB per sample) and a checkpoint starts every ~10 s, each followed by
# a full-page image of every page touched again. Measured with
# `go test -run XXX -bench RecordMillion -benchtime 2x ./store/postgres/`
# (one million samples per minute into one million summaries, 4 writers):
#
#   stock                          45.2 µs database CPU/sample, 2,121 WAL B/sample, 8 checkpoints in 2 min
#   + max_wal_size, checkpoint_timeout, wal_compression (this script, reload)
#                                  44.0 µs, 878 B, 1 checkpoint
#   + shared_buffers 2GB (restart) 33.6 µs, 797 B, 0 backend buffer writes (were 3.05/sample)
#
# Nothing here trades durability: synchronous_commit, fsync and
# full_page_writes stay on (an acknowledged batch survives a crash).
# autovacuum should be on in production (the influencer summary gets one
# dead row version per sample); this script turns it on unless KEEP_AUTOVACUUM=1.
#
# Usage: scripts/pg-tune.sh             apply with ALTER SYSTEM and reload (psql as PGUSER/PGHOST)
#        scripts/pg-tune.sh --print     only print the statements
# Env:   SHARED_BUFFERS (default 25 % of this machine's RAM, at most 8GB) MAX_WAL_SIZE=16GB
#        PGHOST PGPORT PGUSER PGDATABASE as for psql
# shared_buffers takes effect at the next server restart (the script says so).
set -euo pipefail

ram_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
sb_mb=$((ram_mb / 4))
if ((sb_mb > 8192)); then sb_mb=8192; fi
SHARED_BUFFERS=${SHARED_BUFFERS:-${sb_mb}MB}
MAX_WAL_SIZE=${MAX_WAL_SIZE:-16GB}

settings=(
	# The working set in memory: no eviction writes by backends.
	"shared_buffers = '$SHARED_BUFFERS'"
	# Checkpoints by time, not by WAL volume: one every 15 minutes, so a
	# page written every minute gets one full-page image per 15 minutes,
	# not one per 10 s. Crash recovery replays up to ~15 minutes of WAL.
	"max_wal_size = '$MAX_WAL_SIZE'"
	"min_wal_size = '2GB'"
	"checkpoint_timeout = '15min'"
	"checkpoint_completion_target = 0.9"
	# Full-page images compressed (PostgreSQL 15+; use 'pglz' before).
	"wal_compression = 'lz4'"
	# wal_buffers -1 = 1/32 of shared_buffers, at most 64MB (16MB at 512MB).
	"wal_buffers = -1"
)
if [[ ${KEEP_AUTOVACUUM:-} != 1 ]]; then
	settings+=("autovacuum = on")
fi

if [[ ${1:-} == --print ]]; then
	for s in "${settings[@]}"; do
		echo "ALTER SYSTEM SET $s;"
	done
	echo "SELECT pg_reload_conf();"
	exit 0
fi

for s in "${settings[@]}"; do
	psql -X -v ON_ERROR_STOP=1 -qc "ALTER SYSTEM SET $s"
done
psql -X -v ON_ERROR_STOP=1 -qAtc "SELECT pg_reload_conf()" >/dev/null
pending=$(psql -X -qAtc "SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart")
if [[ -n $pending ]]; then
	echo "pg-tune: applied; restart the server for: $pending" >&2
else
	echo "pg-tune: applied" >&2
fi
