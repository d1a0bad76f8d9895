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
#   RESULTS=FILE                     raw timings as JSON
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 2; }

find_prog() { # name: PATH first, then the sbin dirs a non-root PATH lacks
    command -v "$1" 2>/dev/null && return
    local d
    for d in /usr/sbin /usr/local/sbin /usr/local/mysql/bin; do
        [[ -x $d/$1 ]] && { echo "$d/$1"; return; }
    done
    return 1
}
apt_install() {
    [[ $(id -u) == 0 ]] || die "$1 is missing; run as root or: sudo apt-get install -y $*"
    log "installing $* (Debian packages)"
    apt-get install -y "$@" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$@" >/dev/null; }
}

find_prog mariadbd >/dev/null || apt_install mariadb-server
find_prog mariadbd >/dev/null || die "mariadbd not found after installing mariadb-server"
command -v pt-online-schema-change >/dev/null || apt_install percona-toolkit
PTOSC=$(command -v pt-online-schema-change) || die "pt-online-schema-change not found"
# pt-osc talks to the server through Perl DBI; the package pulls libdbd-mysql-perl in.
perl -MDBD::mysql -e1 2>/dev/null || apt_install libdbd-mysql-perl

# The tree as it is built (others may be editing it): named in the results.
SG_COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    SG_COMMIT="$SG_COMMIT+uncommitted"
fi
export SG_COMMIT
log "building the benchmark (cargo build --release -p reconciler --example bench_copy)"
for attempt in 1 2 3 4 5; do
    if (cd "$ROOT" && cargo build --release --quiet -p reconciler --example bench_copy); then
        break
    fi
    [[ $attempt == 5 ]] && die "cargo build --release failed 5 times"
    log "build failed (the tree may be mid-change); retrying in 60s"
    sleep 60
done

log "tree: $SG_COMMIT; load average before the run: $LOAD_START (on $(nproc) CPUs)"
log "pt-online-schema-change: $("$PTOSC" --version 2>/dev/null | head -1)"
PTOSC=$PTOSC exec "$ROOT/target/release/examples/bench_copy"
