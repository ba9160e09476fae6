#!/usr/bin/env bash
# Route decisions per second over HTTP (POST /v1/route, switch key) on the
# embedded SQLite store and on PostgreSQL, each node loaded with the same
# bindings: decisions come from the in-memory index, so the back end should
# not matter.
#
# bench/index_load.sh does the work (see it for the fill and the start-up
# report): for each back end in BACKENDS it fills a fresh store with NUMBERS
# x PER_NUMBER live axb bindings (default 1,000 x 100 = 100,000), starts
# `maskline serve` on it, then runs wrk (bench/route.lua: random known
# bindings, called by A on their X, every answer checked to be "connect")
# with ROUTE_CONNS connections and ROUTE_THREADS threads for ROUTE_DURATION
# after ROUTE_WARMUP, and prints decisions/s, p50/p90/p99/max, the responses
# that were not a 200 "connect", and the CPU of the server, of all postgres
# processes and of wrk.
#
#   bench/route_backends.sh                          # sqlite then pg, 64 conns, 2 threads, 20 s
#   BACKENDS=pg,sqlite,pg bench/route_backends.sh    # alternate
#
# Settings (environment): BACKENDS (sqlite,pg; sqlite at most once), NUMBERS
# (1000), PER_NUMBER (100), ROUTE_CONNS (64), ROUTE_THREADS (2),
# ROUTE_DURATION (20s), ROUTE_WARMUP (3s); PGHOST/PGPORT/PGUSER/PGDATABASE
# as in bench/pg_lib.sh.
#
# Needs wrk, curl, psql and python3. Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export NUMBERS=${NUMBERS:-1000} BACKENDS=${BACKENDS:-sqlite,pg} ROUTE=1
exec bench/index_load.sh
