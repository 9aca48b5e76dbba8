#!/usr/bin/env bash
# bench/state-redis.sh -- the cost of the shared state (issue 13): rebind through one gateway with the
# lockout windows and bind rate in process memory, and through the same gateway configuration with them
# on Redis, side by side in one run (cells interleaved, so both see the same noisy machine). Reports the
# ratio redis/memory of throughput and p50 latency per concurrency; the target is a throughput ratio
# >= 0.85 (within 15 %).
#
# Everything on loopback: the upstream slapd of bench/openldap-anchor.sh (its own ports 3990-3992 and
# data dir, loaded once), a private redis-server (127.0.0.35:6379, appendonly + appendfsync always as
# config/README.md asks), two gateways (3995 memory, 3996 Redis). All stopped by PID at the end.
#
#   DUR=3 WARM=0.5 REPEATS=3 THREADS="1 4 16" N_USERS=2000 bash bench/state-redis.sh   (about 1-2 min)
# Needs: slapd, ldap-utils, libldap-dev, gcc (the anchor's C probe), redis-server, node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

DUR=${DUR:-3} WARM=${WARM:-0.5} REPEATS=${REPEATS:-3} THREADS=${THREADS:-"1 4 16"}
export N_USERS=${N_USERS:-2000} N_GROUPS=${N_GROUPS:-50}
export UP_PORT=3990 PROXY_PORT=3991 RWM_PORT=3992
GW_MEM=3995 GW_REDIS=3996 REDIS_IP=127.0.0.35 REDIS_PORT=6379
BASE="dc=example,dc=test"
ANCHOR="$here/openldap-anchor.sh"
DIR=$(mkdir -p "$root/var/bench/state-redis-$N_USERS" && cd "$root/var/bench/state-redis-$N_USERS" && pwd)
RUN=$(mktemp -d /tmp/ldapgw-bench-redis.XXXXXX)
PIDS=()

for bin in slapd slapadd ldapsearch gcc node redis-server redis-cli; do command -v "$bin" >/dev/null || { echo "state-redis: '$bin' is missing" >&2; exit 3; }; done

cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
  bash "$ANCHOR" down "$DIR" >/dev/null 2>&1 || true
  rm -rf "$RUN"
  exit $rc
}
trap cleanup EXIT INT TERM
log() { echo "state-redis: $*" >&2; }

bash "$ANCHOR" up "$DIR" >&2
LDLAT=$(bash "$ANCHOR" ldlat "$DIR")
npm run --silent build >/dev/null

cat > "$RUN/redis.conf" <<EOF
bind $REDIS_IP
port $REDIS_PORT
protected-mode no
dir $RUN
appendonly yes
appendfsync always
save ""
daemonize no
logfile $RUN/redis.log
EOF
redis-server "$RUN/redis.conf" &
PIDS+=("$!")
for _ in $(seq 100); do [ "$(redis-cli -h $REDIS_IP -p $REDIS_PORT ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done

gateway_config() {  # file port state-block
  cat > "$1" <<EOF
listen:
  ldap: 127.0.0.1:$2
  maxConnections: 20000
  maxConnectionsPerIp: 20000
log:
  level: warn
upstream:
  flavor: openldap
  urls: [ "ldap://127.0.0.1:$UP_PORT" ]
  bind:
    dn: "cn=admin,$BASE"
    password: bench-secret
  baseDN: "$BASE"
  pool: { service: 4, bind: 16 }
directory:
  baseDN: "$BASE"
  users: { rdn: ou=people }
  groups: { rdn: ou=groups, objectClass: groupOfNames }
consumers:
  - name: probe
    bindDN: "cn=admin,$BASE"
    password: bench-secret
$3
EOF
}
start_gateway() {  # config port
  node bin/ldap-gateway.js --config "$1" >> "$RUN/gateway-$2.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 100); do ldapsearch -x -H "ldap://127.0.0.1:$2" -s base -b '' vendorName >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "the gateway on :$2 did not start: $(tail -3 "$RUN/gateway-$2.log")"; exit 1
}
gateway_config "$RUN/memory.yaml" $GW_MEM ""
gateway_config "$RUN/redis.yaml" $GW_REDIS "state:
  redis:
    url: redis://$REDIS_IP:$REDIS_PORT
    keyPrefix: 'bench-$$:'"
start_gateway "$RUN/memory.yaml" $GW_MEM
start_gateway "$RUN/redis.yaml" $GW_REDIS
grep -q '"up":false' "$RUN/gateway-$GW_REDIS.log" && { log "the Redis gateway started without Redis"; exit 1; }

CSV="$RUN/cells.csv"
echo "threads,rep,target,ops_per_s,p50_ms,p99_ms,errors" > "$CSV"
for n in $THREADS; do
  for rep in $(seq "$REPEATS"); do
    for tg in memory redis; do
      [ $tg = memory ] && port=$GW_MEM || port=$GW_REDIS
      line=$("$LDLAT" -H "ldap://127.0.0.1:$port/" -m rebind -n "$n" -d "$DUR" -W "$WARM" -R "$N_USERS" -D "cn=admin,$BASE" -w bench-secret)
      echo "$line" | awk -v n="$n" -v rep="$rep" -v tg="$tg" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } } END { printf "%s,%s,%s,%s,%s,%s,%s\n", n, rep, tg, v["ops_per_s"], v["p50"], v["p99"], v["errors"] }' >> "$CSV"
      tail -1 "$CSV" | awk -F, '{ printf "  rebind n=%-2s rep=%s %-6s %8.0f ops/s  p50 %6s ms  p99 %6s ms  errors %s\n", $1, $2, $3, $4, $5, $6, $7 }' >&2
    done
  done
done
grep -q '"up":false' "$RUN/gateway-$GW_REDIS.log" && log "warning: Redis went away during the run (the ratio is not meaningful)"

echo "rebind: Redis state vs in-memory (medians over $REPEATS interleaved ${DUR}s cells; ratio >= 0.85 meets the 15 % target)"
python3 - "$CSV" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for n in sorted({int(r['threads']) for r in rows}):
    med = lambda tg, k: statistics.median(float(r[k]) for r in rows if int(r['threads']) == n and r['target'] == tg)
    ops_m, ops_r = med('memory', 'ops_per_s'), med('redis', 'ops_per_s')
    p50_m, p50_r = med('memory', 'p50_ms'), med('redis', 'p50_ms')
    errs = sum(int(r['errors']) for r in rows if int(r['threads']) == n)
    print(f"  n={n:<2}  memory {ops_m:8.0f} ops/s  redis {ops_r:8.0f} ops/s  throughput ratio {ops_r / ops_m:.2f}  p50 ratio {p50_r / p50_m:.2f}  errors {errs}")
EOF
