#!/usr/bin/env bash
# Benchmark: the row copy of one non-instant ALTER on a 1,000,000-row table, three ways on the
# same sandbox server in one run — schemagate's shadow strategy (prepare + copy + checksum, as
# `apply` stages a cell), pt-online-schema-change at its defaults, and the server's own
# `ALTER TABLE … ALGORITHM=COPY` (the floor). See docs/benchmarks.md.
#
# Usage: bench/copy.sh
# Knobs (environment), passed to reconciler/examples/bench_copy.rs:
#   ROWS=1000000 ROUNDS=5            table size; rounds (the order of the contenders rotates)
#   BUFFER_POOL_MB=1024 REDO_LOG_MB=512
#                                    resized at run time on the sandbox server (0 keeps the
#                                    sandbox's 128M pool / 64M redo log)
#   CONTENDERS=schemagate,pt-osc,native
#   DIAG=1                           also time single-statement variants (where time goes)
#   RUST_LOG=reconciler=debug        the engine's per-chunk and index-build log lines
#   COPY_THREADS=1 DEFER_INDEXES=1   the copy's connections; 0 keeps secondary indexes during the copy
#   RESULTS=FILE                     raw timings as JSON
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"


find_prog mariadbd >/dev/null || apt_install mariadb-server
find_prog mariadbd >/dev/null || die "mariadbd not found after installing mariadb-server"
command -v pt-online-schema-change >/dev/null || apt_install percona-toolkit
PTOSC=$(command -v pt-online-schema-change) || die "pt-online-schema-change not found"
# pt-osc talks to the server through Perl DBI; the package pulls libdbd-mysql-perl in.
perl -MDBD::mysql -e1 2>/dev/null || apt_install libdbd-mysql-perl

SG_COMMIT=$(tree_commit)
export SG_COMMIT
log "building the benchmark (cargo build --release -p reconciler --example bench_copy)"
build_release -p reconciler --example bench_copy

log "tree: $SG_COMMIT; load average before the run: $LOAD_START (on $(nproc) CPUs)"
log "pt-online-schema-change: $("$PTOSC" --version 2>/dev/null | head -1)"
PTOSC=$PTOSC exec "$ROOT/target/release/examples/bench_copy"
