#!/usr/bin/env bash
# Benchmark: the seal of 20 deployments in a row on 8 sandbox shards under a steady write load
# (one writer per shard, autocommit INSERTs/UPDATEs on the table being changed, the latency of
# every write recorded): seal skew p50/p99 and the longest write stall. Each deployment runs
# the real binary, `schemagate apply --seal auto`. See docs/benchmarks.md.
#
# Usage: bench/seal.sh
# Knobs (environment), passed to reconciler/examples/bench_seal.rs:
#   SHARDS=8 DEPLOYMENTS=20 ROWS=20000 (per shard) RATE=300 (writes/s per shard)
#   BASELINE_SECS=5 (write latency before any deployment)  PAUSE_MS=1000 (between deployments)
#   APPLY_ARGS="..." (extra apply arguments, e.g. --lock-budget-ms 50)
#   TRACE=1 TRACE_MS=5 (poll each shard's processlist to explain the longest writes; adds load)
#   RESULTS=FILE (every deployment, the latency summaries and apply's log lines as JSON)
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_prog mariadbd >/dev/null || apt_install mariadb-server

SG_COMMIT=$(tree_commit)
export SG_COMMIT
log "building schemagate and the benchmark (cargo build --release --bin schemagate -p reconciler --example bench_seal)"
build_release --bin schemagate
build_release -p reconciler --example bench_seal

log "tree: $SG_COMMIT; load average before the run: $LOAD_START (on $(nproc) CPUs)"
SCHEMAGATE=$ROOT/target/release/schemagate exec "$ROOT/target/release/examples/bench_seal"
