# Shared by the bench/*.sh scripts: logging, finding and installing programs, naming the tree.
# Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg) # before the script adds any load of its own
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

apt_install() { # Debian packages, as root
    [[ $(id -u) == 0 ]] || die "$1 is missing; run as root or: sudo apt-get install -y $*"
    log "installing $* (Debian packages)"
    apt-get install -y "$@" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$@" >/dev/null; }
}

# The tree as it is built (others may be editing it): named in the results.
tree_commit() {
    local commit
    commit=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        commit="$commit+uncommitted"
    fi
    echo "$commit"
}

# cargo build --release ARGS… in the tree, tried up to 5 times a minute apart: the tree may be
# mid-change while others edit it.
build_release() {
    local attempt
    for attempt in 1 2 3 4 5; do
        if (cd "$ROOT" && cargo build --release --quiet "$@"); then
            return 0
        fi
        [[ $attempt == 5 ]] && die "cargo build --release $* failed 5 times"
        log "build failed (the tree may be mid-change); retrying in 60s"
        sleep 60
    done
}
