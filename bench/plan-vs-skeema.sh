#!/usr/bin/env bash
# Benchmark: `schemagate plan` vs `skeema diff` on the same throwaway MariaDB fleet.
#
# Starts SHARDS local mariadbd servers, loads the same TABLES-table schema into database
# `bench` on each, writes a desired state that differs from it in a realistic way (5 tables
# altered, 1 created), checks that both tools find exactly those changes on every shard, then
# times both tools RUNS times each (interleaved, after a warm-up run) and prints median/min
# and the ratio skeema/schemagate. See docs/benchmarks.md.
#
# Usage: bench/plan-vs-skeema.sh
# Knobs (environment): SHARDS=8 TABLES=500 RUNS=5
#   SKEEMA_PARALLEL=1   also time `skeema diff --concurrent-instances=$SHARDS` (0 to skip)
#   KEEP=1              keep the servers' directory (the servers are still stopped)
#   BENCH_TMP=/tmp      where the work directory goes (keep it short: socket paths)
#   RESULTS=FILE        also write the timings as JSON to FILE
set -euo pipefail

SHARDS=${SHARDS:-8}
TABLES=${TABLES:-500}
RUNS=${RUNS:-5}
SKEEMA_PARALLEL=${SKEEMA_PARALLEL:-1}
KEEP=${KEEP:-0}
BENCH_TMP=${BENCH_TMP:-/tmp}
RESULTS=${RESULTS:-}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
command -v skeema >/dev/null || apt_install skeema
command -v python3 >/dev/null || die "python3 is required (schema generator, timing summary)"
MARIADBD=$(find_prog mariadbd) || die "mariadbd not found: apt-get install -y mariadb-server"
INSTALL_DB=$(find_prog mariadb-install-db) || die "mariadb-install-db not found"
MARIADB=$(find_prog mariadb) || die "the mariadb client is not found"

log "building schemagate (cargo build --release)"
build_release --bin schemagate
SCHEMAGATE=$ROOT/target/release/schemagate

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d "$BENCH_TMP/sgb.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

USER_FLAG=()
[[ $(id -u) == 0 ]] && USER_FLAG=(--user=root)
# The same InnoDB settings as the project's sandbox (reconciler/src/sandbox.rs).
INNODB_FLAGS=(--innodb-buffer-pool-size=128M --innodb-log-file-size=64M
    --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0)
SERVER_FLAGS=(--bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci --max-connections=500)

log "mariadb-install-db into a template data directory"
"$INSTALL_DB" --no-defaults --datadir="$WORK/template" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve "${USER_FLAG[@]}" "${INNODB_FLAGS[@]}" \
    >"$WORK/install-db.log" 2>&1 || { cat "$WORK/install-db.log" >&2; die "mariadb-install-db failed"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

PORTS=()
for ((i = 0; i < SHARDS; i++)); do
    dir=$WORK/s$i
    mkdir -p "$dir/tmp"   # a private tmpdir: other processes on the machine may clean /tmp
    cp -a "$WORK/template" "$dir/data"
    port=$(free_port)
    "$MARIADBD" --no-defaults --datadir="$dir/data" --port="$port" --socket="$dir/sock" \
        --pid-file="$dir/pid" --log-error="$dir/error.log" --tmpdir="$dir/tmp" "${USER_FLAG[@]}" \
        "${INNODB_FLAGS[@]}" "${SERVER_FLAGS[@]}" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
    PORTS+=("$port")
done
sql() { # port, then mariadb client arguments
    local port=$1; shift
    "$MARIADB" --no-defaults -uroot -h127.0.0.1 -P"$port" --protocol=tcp "$@"
}
for ((i = 0; i < SHARDS; i++)); do
    for ((t = 0; ; t++)); do
        sql "${PORTS[i]}" -e 'SELECT 1' >/dev/null 2>&1 && break
        kill -0 "${PIDS[i]}" 2>/dev/null || { tail -20 "$WORK/s$i/error.log" >&2; die "mariadbd $i exited"; }
        ((t < 600)) || die "mariadbd $i did not accept connections within 60s"
        sleep 0.1
    done
done
SERVER_VERSION=$(sql "${PORTS[0]}" -N -e 'SELECT VERSION()')
log "$SHARDS servers up ($SERVER_VERSION), ports ${PORTS[*]}"

# ---------------------------------------------------------------------------------------------
# Schemas: live state (loaded into every shard) and the desired state (files for both tools)
# ---------------------------------------------------------------------------------------------
python3 - "$WORK" "$TABLES" <<'PY'
import os, random, sys

work, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240601)  # fixed seed: every run benchmarks the same schema

ENTITIES = ["account", "order", "invoice", "payment", "shipment", "product", "customer", "session",
            "ticket", "review", "coupon", "warehouse", "subscription", "refund", "address", "device",
            "message", "campaign", "ledger", "contract"]
QUALIFIERS = ["", "_item", "_event", "_history", "_note", "_tag", "_attr", "_snapshot", "_line", "_link"]

def col_pool(t):
    """Optional columns: (name, definition, indexable?)."""
    return [
        ("tenant_id", "INT UNSIGNED NOT NULL", True),
        ("name", f"VARCHAR({rng.choice([64, 128, 255])}) NOT NULL DEFAULT ''", True),
        ("email", "VARCHAR(255) DEFAULT NULL", True),
        ("status", "ENUM('new','active','suspended','closed') NOT NULL DEFAULT 'new'", True),
        ("amount", f"DECIMAL({rng.choice([10, 12, 18])},2) NOT NULL DEFAULT 0.00", False),
        ("currency", "CHAR(3) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'EUR'", True),
        ("quantity", "SMALLINT UNSIGNED NOT NULL DEFAULT 1", False),
        ("score", "DOUBLE DEFAULT NULL", False),
        ("rank_pos", "MEDIUMINT DEFAULT NULL", False),
        ("is_active", "TINYINT(1) NOT NULL DEFAULT 1", True),
        ("external_uuid", "BINARY(16) DEFAULT NULL", True),
        ("code", "VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin DEFAULT NULL", True),
        ("description", "TEXT", False),
        ("attributes", "JSON DEFAULT NULL", False),
        ("checksum", "VARBINARY(64) DEFAULT NULL", False),
        ("birth_date", "DATE DEFAULT NULL", True),
        ("valid_until", "DATETIME(3) DEFAULT NULL", True),
        ("flags", "SET('a','b','c','d') NOT NULL DEFAULT ''", False),
        ("version", "INT NOT NULL DEFAULT 0", False),
        ("ip_address", "VARBINARY(16) DEFAULT NULL", True),
    ]

tables = []  # dicts: name, columns [(name, def)], keys [str], fks [str], partition str|None, options
names = set()
for i in range(n):
    while True:
        name = f"{rng.choice(ENTITIES)}{rng.choice(QUALIFIERS)}_{i:03d}"
        if name not in names:
            names.add(name)
            break
    partitioned = i % 50 == 25           # 10 of 500: hash-partitioned, no FKs (InnoDB forbids them)
    cols = [("id", "BIGINT UNSIGNED NOT NULL AUTO_INCREMENT")]
    pool = col_pool(i)
    picked = rng.sample(pool, rng.randint(4, 11))
    picked.sort(key=lambda c: [p[0] for p in pool].index(c[0]))
    cols += [(c[0], c[1]) for c in picked]
    parent = None
    if not partitioned and i >= 10 and rng.random() < 0.3:
        parent = tables[rng.randrange(max(0, i - 40), i)]
        while parent["partition"]:
            parent = tables[rng.randrange(0, i)]
        cols.insert(1, ("parent_id", "BIGINT UNSIGNED NOT NULL"))
    cols.append(("created_at", "DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP"))
    cols.append(("updated_at", "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"))
    keys = ["PRIMARY KEY (id)"]
    indexable = [c[0] for c in picked if c[2]]
    rng.shuffle(indexable)
    have = {c[0] for c in cols}
    if "tenant_id" in have and "email" in have and not partitioned:
        keys.append("UNIQUE KEY uk_tenant_email (tenant_id, email)")
    elif "code" in have and not partitioned:
        keys.append("UNIQUE KEY uk_code (code)")
    for c in indexable[: rng.randint(0, 3)]:
        if c == "email":
            keys.append("KEY idx_email (email(32))")  # prefix index
        else:
            keys.append(f"KEY idx_{c} ({c})")
    if rng.random() < 0.5:
        lead = "tenant_id" if "tenant_id" in have else "created_at"
        keys.append(f"KEY idx_{lead}_created ({lead}, created_at)" if lead != "created_at" else "KEY idx_created (created_at)")
    fks = []
    if parent is not None:
        keys.append("KEY idx_parent (parent_id)")
        action = rng.choice(["", " ON DELETE CASCADE", " ON DELETE RESTRICT ON UPDATE CASCADE"])
        fks.append(f"CONSTRAINT fk_{name}_parent FOREIGN KEY (parent_id) REFERENCES {parent['name']} (id){action}")
    options = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
    if rng.random() < 0.2:
        options += " ROW_FORMAT=DYNAMIC"
    if rng.random() < 0.3:
        options += f" COMMENT='{name.split('_')[0]} records'"
    part = "PARTITION BY HASH (id) PARTITIONS 4" if partitioned else None
    tables.append(dict(name=name, cols=cols, keys=keys, fks=fks, partition=part, options=options))

def render(t):
    body = [f"  {c} {d}" for c, d in t["cols"]] + [f"  {k}" for k in t["keys"]] + [f"  {f}" for f in t["fks"]]
    out = f"CREATE TABLE {t['name']} (\n" + ",\n".join(body) + f"\n) {t['options']}"
    if t["partition"]:
        out += f"\n{t['partition']}"
    return out + ";\n"

live = [render(t) for t in tables]

# The desired state: 5 realistic alters and 1 new table; every other table identical.
plain = [t for t in tables if not t["partition"] and not t["fks"]]
def pick(pred):
    for t in plain:
        if pred(t) and not t.get("changed"):
            t["changed"] = True
            return t
    raise SystemExit("generator: no table fits a planned change; change the seed")
colnames = lambda t: [c for c, _ in t["cols"]]
expected = []
t = pick(lambda t: True)                                                    # 1: column added
t["cols"].insert(len(t["cols"]) - 2, ("archived_at", "DATETIME DEFAULT NULL")); expected.append(t["name"])
t = pick(lambda t: "status" in colnames(t) and "KEY idx_status (status)" not in t["keys"])  # 2: index added
t["keys"].append("KEY idx_status_created (status, created_at)"); expected.append(t["name"])
t = pick(lambda t: "name" in colnames(t) and "VARCHAR(64)" in dict(t["cols"])["name"])    # 3: column widened
t["cols"] = [(c, d.replace("VARCHAR(64)", "VARCHAR(191)") if c == "name" else d) for c, d in t["cols"]]; expected.append(t["name"])
t = pick(lambda t: "code" not in colnames(t) and not any(k.startswith("UNIQUE") for k in t["keys"]))  # 4: column + unique index
t["cols"].insert(len(t["cols"]) - 2, ("external_ref", "VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin DEFAULT NULL"))
t["keys"].append("UNIQUE KEY uk_external_ref (external_ref)"); expected.append(t["name"])
t = pick(lambda t: "status" in colnames(t))                                # 5: enum value appended
t["cols"] = [(c, d.replace("'closed')", "'closed','archived')") if c == "status" else d) for c, d in t["cols"]]; expected.append(t["name"])
new = dict(name="audit_event", cols=[                                        # 6: table created
    ("id", "BIGINT UNSIGNED NOT NULL AUTO_INCREMENT"), ("account_id", "BIGINT UNSIGNED NOT NULL"),
    ("actor", "VARCHAR(128) NOT NULL"), ("action", "ENUM('create','update','delete') NOT NULL"),
    ("payload", "JSON DEFAULT NULL"), ("created_at", "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)")],
    keys=["PRIMARY KEY (id)", "KEY idx_account_created (account_id, created_at)"],
    fks=[f"CONSTRAINT fk_audit_event_account FOREIGN KEY (account_id) REFERENCES {tables[0]['name']} (id)"],
    partition=None, options="ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci")
tables.append(new); expected.append(new["name"])

with open(os.path.join(work, "live.sql"), "w") as f:
    f.write("SET SESSION foreign_key_checks = 0;\n")
    f.writelines(live)
for d in ("repo/schemas/bench", "skeema"):
    os.makedirs(os.path.join(work, d), exist_ok=True)
for t in tables:
    text = render(t)
    for d in ("repo/schemas/bench", "skeema"):
        with open(os.path.join(work, d, t["name"] + ".sql"), "w") as f:
            f.write(text)
with open(os.path.join(work, "expected"), "w") as f:
    f.write("\n".join(sorted(expected)) + "\n")
PY
log "generated $TABLES live tables; desired state: $(paste -sd' ' "$WORK/expected") change"

{
    echo "keyspaces:"
    echo "  bench:"
    echo "    shards:"
    for ((i = 0; i < SHARDS; i++)); do
        # Vitess-style key-range names: -20, 20-40, …, e0-
        lo=$(( i * 256 / SHARDS )); hi=$(( (i + 1) * 256 / SHARDS ))
        name=-
        ((i > 0)) && name=$(printf '%02x' $lo)$name
        ((i < SHARDS - 1)) && name=$name$(printf '%02x' $hi)
        echo "      - name: \"$name\""
        echo "        dsn: mysql://root@127.0.0.1:${PORTS[i]}"
    done
} >"$WORK/repo/schemagate.yaml"
HOSTS=$(printf '127.0.0.1:%s,' "${PORTS[@]}")
# Skeema at its defaults (workspace=temp-schema, concurrent-instances=1, verify, lint); only
# where to connect and, for reproducibility, no ~/.my.cnf.
cat >"$WORK/skeema/.skeema" <<EOF
host=${HOSTS%,}
user=root
schema=bench
skip-my-cnf
EOF

log "loading the live schema into $SHARDS shards"
LOADERS=()
for ((i = 0; i < SHARDS; i++)); do
    { sql "${PORTS[i]}" -e 'CREATE DATABASE bench' && sql "${PORTS[i]}" bench <"$WORK/live.sql"; } &
    LOADERS+=($!)
done
fail=0
for job in "${LOADERS[@]}"; do wait "$job" || fail=1; done
((fail == 0)) || die "loading the live schema failed"
for ((i = 0; i < SHARDS; i++)); do
    got=$(sql "${PORTS[i]}" -N -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='bench'")
    [[ $got == "$TABLES" ]] || die "shard $i has $got tables, expected $TABLES"
done

# ---------------------------------------------------------------------------------------------
# Both tools must find the same changes (this is also each tool's warm-up run)
# ---------------------------------------------------------------------------------------------
run_schemagate() { "$SCHEMAGATE" plan --repo "$WORK/repo" "$@"; }
run_skeema() { (cd "$WORK/skeema" && skeema diff "$@"); }

set +e
run_schemagate --format json >"$WORK/schemagate.json" 2>"$WORK/schemagate.err"; sg_rc=$?
run_skeema >"$WORK/skeema.out" 2>"$WORK/skeema.err"; sk_rc=$?
set -e
[[ $sg_rc == 1 ]] || { cat "$WORK/schemagate.err" >&2; head -c 4000 "$WORK/schemagate.json" >&2; die "schemagate plan exited $sg_rc, expected 1 (changes)"; }
[[ $sk_rc == 1 ]] || { cat "$WORK/skeema.err" >&2; die "skeema diff exited $sk_rc, expected 1 (differences)"; }

python3 - "$WORK" "${PORTS[@]}" <<'PY'
import json, re, sys
work, ports = sys.argv[1], sys.argv[2:]
expected = set(open(f"{work}/expected").read().split())
plan = json.load(open(f"{work}/schemagate.json"))
shards = [s for k in plan["keyspaces"] for s in k["shards"]]
problems = []
for s in shards:
    got = {c["table"] for c in s["changes"]}
    if got != expected or s.get("errors"):
        problems.append(f"schemagate shard {s['shard']}: tables {sorted(got)}, errors {s.get('errors')}")
# skeema prints "-- instance: host:port" then "USE `bench`;" and the statements.
per_instance, statements, current = {}, {}, None
for chunk in re.split(r"(?m)^(?=-- instance: )", open(f"{work}/skeema.out").read()):
    m = re.match(r"-- instance: (\S+)", chunk)
    if not m:
        continue
    current = m.group(1)
    body = "\n".join(l for l in chunk.splitlines() if not l.startswith(("--", "USE ")))
    stmts = {" ".join(s.split()) for s in body.split(";\n") if s.strip()}
    stmts = {s.rstrip(";") for s in stmts}
    statements[current] = stmts
    per_instance[current] = {re.match(r"(?:ALTER|CREATE|DROP) TABLE `([^`]+)`", s).group(1) for s in stmts}
norm = lambda s: " ".join(s.split()).replace("( ", "(").replace(" )", ")")
mismatch = 0
for p, s in zip(ports, shards):
    a = {norm(c["statement"]) for c in s["changes"]}
    b = {norm(x) for x in statements.get(f"127.0.0.1:{p}", set())}
    mismatch += a != b
for p in ports:
    got = per_instance.get(f"127.0.0.1:{p}")
    if got != expected:
        problems.append(f"skeema instance 127.0.0.1:{p}: tables {sorted(got or [])}")
if len(shards) != len(ports):
    problems.append(f"schemagate planned {len(shards)} shards, expected {len(ports)}")
if problems:
    print("the tools disagree with the expected changes:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"both tools find the same {len(expected)} changed tables on all {len(ports)} shards", file=sys.stderr)
print("their statements are identical apart from order and whitespace" if not mismatch else
      f"note: the statements differ in wording on {mismatch} shard(s) (same tables)", file=sys.stderr)
PY
log "schemagate plan (text; shards with the same plan are grouped):"
{ run_schemagate 2>/dev/null || true; } | head -40 >&2
log "first instance's diff, skeema:"
awk '/^-- instance:/{n++} n==1' "$WORK/skeema.out" | head -40 >&2

# ---------------------------------------------------------------------------------------------
# Timing: interleaved runs, after the warm-up above
# ---------------------------------------------------------------------------------------------
# schemagate-cold bypasses the canonical-form cache (`--no-cache`): every desired table goes
# through a workspace, as on the very first plan against a server.
VARIANTS=(schemagate schemagate-cold skeema)
((SKEEMA_PARALLEL == 1)) && VARIANTS+=(skeema-c$SHARDS)
run_variant() {
    case $1 in
        schemagate) run_schemagate ;;
        schemagate-cold) run_schemagate --no-cache ;;
        skeema) run_skeema ;;
        skeema-c*) run_skeema --concurrent-instances="$SHARDS" ;;
    esac
}
: >"$WORK/times"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before timing: $LOAD_BEFORE"
awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' &&
    log "warning: the machine is busy (load $LOAD_BEFORE on $(nproc) CPUs); timings will be noisy"
for ((r = 1; r <= RUNS; r++)); do
    # Rotate the order so that no tool always runs right after another.
    for ((v = 0; v < ${#VARIANTS[@]}; v++)); do
        variant=${VARIANTS[(v + r) % ${#VARIANTS[@]}]}
        start=$EPOCHREALTIME
        set +e
        run_variant "$variant" >/dev/null 2>"$WORK/last.err"; rc=$?
        set -e
        end=$EPOCHREALTIME
        [[ $rc == 1 ]] || { cat "$WORK/last.err" >&2; die "$variant exited $rc during timing, expected 1"; }
        secs=$(python3 -c "print(f'{$end - $start:.3f}')")
        echo "$variant $secs" >>"$WORK/times"
        log "run $r/$RUNS  $variant  ${secs}s  (load $(cut -d' ' -f1 /proc/loadavg))"
    done
done

# Where schemagate's time goes: one more run with its own debug timings (best effort: the
# log messages are not a stable interface).
PHASES=$(
    start=$EPOCHREALTIME
    run_schemagate --log-level reconciler=debug >/dev/null 2>"$WORK/phases.log" || true
    end=$EPOCHREALTIME
    python3 - "$start" "$end" "$WORK/phases.log" <<'PY' || true
import datetime, re, sys
start, end = float(sys.argv[1]), float(sys.argv[2])
prev, parts = start, []
for line in open(sys.argv[3]):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.match(r"(\S+)Z\s+\w+\s+\S+: (.*?)(?:\s+\w+=.*)?$", line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
    parts.append(f"{m.group(2)} +{(t - prev) * 1000:.0f}ms")
    prev = t
parts.append(f"exit +{(end - prev) * 1000:.0f}ms")
print(f"{(end - start) * 1000:.0f}ms = " + ", ".join(parts))
PY
)

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
python3 - "$WORK/times" "$RESULTS" <<PY
import json, statistics, sys
times = {}
for line in open(sys.argv[1]):
    v, s = line.split(); times.setdefault(v, []).append(float(s))
print()
print("schemagate plan vs skeema diff: $SHARDS shards x $TABLES tables, $RUNS timed runs each (after 1 warm-up)")
print("machine: $(nproc) CPUs, $CPU; server $SERVER_VERSION")
print("tools: $("$SCHEMAGATE" --version 2>/dev/null), $(skeema version 2>/dev/null | head -1)")
print("schemagate phases (one extra run, --log-level reconciler=debug): $PHASES")
print("load average at start: $LOAD_START; before timing: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)")
print()
print(f"{'variant':<14} {'median s':>9} {'min s':>8} {'max s':>8}   runs")
for v, ts in times.items():
    print(f"{v:<14} {statistics.median(ts):9.3f} {min(ts):8.3f} {max(ts):8.3f}   {' '.join(f'{t:.2f}' for t in ts)}")
print()
for v in times:
    if v.startswith("skeema"):
        for base in ("schemagate", "schemagate-cold"):
            print(f"ratio {v}/{base} (median): {statistics.median(times[v]) / statistics.median(times[base]):.2f}x   (min/min: {min(times[v]) / min(times[base]):.2f}x)")
if sys.argv[2]:
    json.dump({"shards": $SHARDS, "tables": $TABLES, "runs": $RUNS, "server": "$SERVER_VERSION", "load_start": "$LOAD_START", "load_before": "$LOAD_BEFORE",
               "seconds": times}, open(sys.argv[2], "w"), indent=2)
PY
