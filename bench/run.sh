#!/usr/bin/env bash
# npm run bench -- ldap-gateway against the direct path and OpenLDAP's back-ldap proxy, in the same run.
#
# Starts on loopback: the upstream slapd (back-mdb, N_USERS users) and the back-ldap proxy
# (bench/openldap-anchor.sh), and in front of the same upstream the gateway as these targets:
#   gateway          one process (memory state)
#   gw-workers2      workers: 2 (a supervisor and two processes sharing the listener)
#   gw-ha2           two one-process replicas sharing their state on Redis, behind HAProxy (TCP mode,
#                    balance leastconn, send-proxy-v2 and option ldap-check as deploy/haproxy/haproxy.cfg;
#                    the replicas trust 127.0.0.1 for the PROXY header)
#   gw-redis         one process with its state on Redis (the same redis-server: 127.0.0.1, appendonly,
#                    appendfsync always, as config/README.md asks)
#   gw+outbox        one process recording a provisioning event per bind (webhook to bench/sink.ts)
#   demo / demo+offline  two gateways in front of the embedded demo directory, auth.offline off and on
#                    (offline binds need an AD-flavoured upstream: the slapd upstream is not one)
# Every cell runs its targets back to back (interleaved), so ratios compare like with like on a shared,
# noisy machine. Everything it starts (slapds, gateways, redis-server, haproxy, the sink) is stopped at the
# end, by PID, however the run ends.
#
#   BENCH_MODE=full   (default) 10 s cells, concurrency 1 4 16, 3 repeats (medians): about 45 minutes
#                     (THREADS="4 16": about 30)
#   BENCH_MODE=smoke  2 s cells, concurrency 4, 1 repeat, 2,000 users: under two minutes (CI runs this);
#                     every target runs at least once
#   BENCH_DIR=var/bench/<N>-users   data (kept between runs: the upstream is loaded once) and results/
#   BENCH_AD=1        also: one-entry and repeated searches against Samba AD (the test bed) direct vs
#                     through the gateway (needs the test bed's template: run npm test once)
#
# Scenarios (C probe "ldlat" from the anchor, libldap: exact latency percentiles):
#   rebind  bind as random users on a kept-open connection
#   bind    new connection + bind + unbind per login
#   search  one-entry search by uid on a bound connection (random users)
#   cached  the same, over 50 users only (the gateway answers repeats from its cache)
#     (these four: direct, back-ldap, gateway, gw-workers2, gw-ha2)
#   outbox  rebind: gateway vs gw+outbox (an event recorded per bind, dedupe off)
#   redis   rebind: gateway vs gw-redis (lockout windows, wrong-password memory and bind rate on Redis)
#   offline rebind as the demo's three users: demo vs demo+offline (issue 14: within 10 %)
# and with a Node generator (what ldlat cannot do): a Defguard full sync (paged users + groups) through
# direct, back-ldap, gateway, gw-workers2 and gw-ha2; 10,000 idle connections (gateway RSS).
# Needs: slapd, ldap-utils, libldap-dev, gcc, python3 (the anchor), node, redis-server, haproxy, curl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

MODE=${BENCH_MODE:-full}
[ "$MODE" = smoke ] && DEFAULT_USERS=2000 || DEFAULT_USERS=10000
export N_USERS=${N_USERS:-$DEFAULT_USERS} N_GROUPS=${N_GROUPS:-50}
# the upstream's data is generated once per size and kept
DIR=$(mkdir -p "${BENCH_DIR:-$root/var/bench/$N_USERS-users}" && cd "${BENCH_DIR:-$root/var/bench/$N_USERS-users}" && pwd)
case "$MODE" in
  smoke) DUR=${DUR:-2} WARM=${WARM:-0.5} REPEATS=${REPEATS:-1} THREADS=${THREADS:-"4"} IDLE=${IDLE:-2000} ;;
  full)  DUR=${DUR:-10} WARM=${WARM:-1} REPEATS=${REPEATS:-3} THREADS=${THREADS:-"1 4 16"} IDLE=${IDLE:-10000} ;;
  *) echo "BENCH_MODE must be smoke or full" >&2; exit 2 ;;
esac
SCENARIOS=${SCENARIOS:-"rebind bind search cached outbox redis offline"}   # SCENARIOS=none: only the sync and idle parts
UP=3890; BL=3891; GW=3895; GW_HTTP=3896; GWO=3897; GWW=3900
HA=3902; GWR=3903; R1=3905; R2=3906; REDIS=3907; GWD=3908; GWDO=3909   # their HTTP ports: LDAP port + 10
HAPROXY=${HAPROXY_BIN:-/usr/sbin/haproxy}
BASE="dc=example,dc=test"
ANCHOR="$here/openldap-anchor.sh"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$DIR/results/$STAMP"; mkdir -p "$OUT"
CSV="$OUT/cells.csv"
HZ=$(getconf CLK_TCK)
PIDS=()
RUN=$(mktemp -d /tmp/ldapgw-bench.XXXXXX)   # redis-server's data, HAProxy's config: removed at the end

for bin in slapd slapadd ldapsearch gcc node redis-server redis-cli curl "$HAPROXY"; do command -v "$bin" >/dev/null || { echo "bench: '$bin' is missing (apt-get install slapd ldap-utils libldap-dev gcc redis-server haproxy curl)" >&2; exit 3; }; done
[ -f /usr/include/ldap.h ] || { echo "bench: libldap-dev is missing (apt-get install libldap-dev)" >&2; exit 3; }

cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
  bash "$ANCHOR" down "$DIR" >/dev/null 2>&1 || true
  rm -rf "$RUN"
  exit $rc
}
trap cleanup EXIT INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log() { echo "bench: $*" >&2; }

log "mode $MODE: ${DUR}s cells, concurrency '$THREADS', $REPEATS repeat(s), $N_USERS users; results in $OUT"
bash "$ANCHOR" up "$DIR" >&2
LDLAT=$(bash "$ANCHOR" ldlat "$DIR")
npm run --silent build >/dev/null
npx tsc -p tsconfig.bench.json

# The gateway mirrors the upstream's naming (users at uid=userNNNN,ou=people,dc=example,dc=test), so
# the same probe arguments drive all three targets; it still resolves, maps and rebuilds every entry.
# The probes search as the upstream's admin; on the gateway that DN is a consumer, as Defguard's would be.
gateway_config() {  # file port http extra-top-level-lines [extra-listen-lines]
  cat > "$1" <<EOF
listen:
  ldap: 127.0.0.1:$2
  maxConnections: 20000
  maxConnectionsPerIp: 20000
${5:-}
http:
  listen: 127.0.0.1:$3
log:
  level: info
upstream:
  flavor: openldap
  urls: [ "ldap://127.0.0.1:$UP" ]
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
$4
EOF
}

start_gateway() {  # config port [http-port: ready on /readyz instead of a rootDSE read]; sets STARTED to its pid
  node --max-semi-space-size=64 bin/ldap-gateway.js --config "$1" >> "$OUT/gateway-$2.log" 2>&1 &   # as npm start, the image and the unit run it
  STARTED=$!   # no subshell: PIDS must keep it for cleanup
  PIDS+=("$STARTED")
  for _ in $(seq 150); do
    if [ -n "${3:-}" ]; then curl -sf -o /dev/null "http://127.0.0.1:$3/readyz" && return 0
    else ldapsearch -x -H "ldap://127.0.0.1:$2" -s base -b '' vendorName >/dev/null 2>&1 && return 0; fi
    sleep 0.1
  done
  log "the gateway on :$2 did not start: $(tail -3 "$OUT/gateway-$2.log")"; exit 1
}

gateway_config "$DIR/gateway.yaml" "$GW" "$GW_HTTP" ""
start_gateway "$DIR/gateway.yaml" "$GW"; GW_PID=$STARTED
node bench-dist/bench/sink.js 3899 > "$OUT/sink.log" 2>&1 &
PIDS+=("$!")
gateway_config "$DIR/gateway-outbox.yaml" "$GWO" 3898 "provisioning:
  mode: webhook
  outbox: $DIR/outbox
  dedupeWindowMs: 0
  webhook: { url: 'http://127.0.0.1:3899/events', secret: bench-signing-secret-0123 }"
rm -rf "$DIR/outbox"
start_gateway "$DIR/gateway-outbox.yaml" "$GWO"; GWO_PID=$STARTED
# the same gateway as two processes sharing the listener (workers: 2, host-wide state in the supervisor)
gateway_config "$DIR/gateway-w2.yaml" "$GWW" 3901 "workers: 2"
start_gateway "$DIR/gateway-w2.yaml" "$GWW"; GWW_PID=$STARTED

# Redis for gw-redis and the two replicas (each under its own key prefix): loopback, a fresh data dir,
# the persistence config/README.md asks for
cat > "$RUN/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS
protected-mode no
dir $RUN
appendonly yes
appendfsync always
maxmemory-policy noeviction
save ""
daemonize no
logfile $RUN/redis.log
EOF
redis-server "$RUN/redis.conf" &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
for _ in $(seq 100); do [ "$(redis-cli -h 127.0.0.1 -p "$REDIS" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(redis-cli -h 127.0.0.1 -p "$REDIS" ping 2>/dev/null)" = PONG ] || { log "redis-server did not start: $(tail -3 "$RUN/redis.log")"; exit 1; }
redis_state() {  # key-prefix
  printf 'state:\n  redis:\n    url: redis://127.0.0.1:%s\n    keyPrefix: "%s"' "$REDIS" "$1"
}
gateway_config "$DIR/gateway-redis.yaml" "$GWR" $((GWR + 10)) "$(redis_state bench-single:)"
start_gateway "$DIR/gateway-redis.yaml" "$GWR"; GWR_PID=$STARTED

# two replicas (one process each, one Redis) behind HAProxy. They require the PROXY header from
# 127.0.0.1 (so they are reached through HAProxy only, and are ready on /readyz)
for i in 1 2; do
  port=$([ "$i" = 1 ] && echo "$R1" || echo "$R2")
  gateway_config "$DIR/gateway-replica$i.yaml" "$port" $((port + 10)) "instance: gw$i
$(redis_state bench-ha:)" "  proxyProtocol:
    trusted: [ 127.0.0.1 ]"
  start_gateway "$DIR/gateway-replica$i.yaml" "$port" $((port + 10))
  if [ "$i" = 1 ]; then R1_PID=$STARTED; else R2_PID=$STARTED; fi
done
# deploy/haproxy/haproxy.cfg's LDAP frontend and backend on loopback, in the foreground (-db: the PID is
# HAProxy's), without its log (a line per connection would be HAProxy's work, not the gateway's)
HA_MAXCONN=$(( $(ulimit -n) / 2 - 100 )); [ "$HA_MAXCONN" -gt 20000 ] && HA_MAXCONN=20000   # two fds per connection
cat > "$RUN/haproxy.cfg" <<EOF
global
    maxconn $HA_MAXCONN
defaults
    mode tcp
    timeout connect 3s
    retries 2
    option redispatch
    timeout client 10m
    timeout server 10m
    timeout client-fin 30s
    timeout server-fin 30s
    timeout check 3s
frontend ldap
    bind 127.0.0.1:$HA
    default_backend gateway_ldap
backend gateway_ldap
    balance leastconn
    option ldap-check
    default-server send-proxy-v2 check inter 2s fall 2 rise 1 on-marked-down shutdown-sessions
    server gw1 127.0.0.1:$R1
    server gw2 127.0.0.1:$R2
EOF
"$HAPROXY" -c -q -f "$RUN/haproxy.cfg" >&2 || { log "haproxy -c refused $RUN/haproxy.cfg"; exit 1; }
"$HAPROXY" -db -f "$RUN/haproxy.cfg" > "$OUT/haproxy.log" 2>&1 &
HA_PID=$!; PIDS+=("$HA_PID")
for _ in $(seq 100); do ldapsearch -x -H "ldap://127.0.0.1:$HA" -s base -b '' vendorName >/dev/null 2>&1 && break; sleep 0.1; done
ldapsearch -x -H "ldap://127.0.0.1:$HA" -s base -b '' vendorName >/dev/null 2>&1 || { log "HAProxy on :$HA does not reach the replicas: $(tail -3 "$OUT/haproxy.log")"; exit 1; }

# offline binds off and on (issue 14), each gateway in front of its own embedded demo directory
demo_config() {  # file port offline(true|false)
  cat > "$1" <<EOF
demo: true
listen:
  ldap: 127.0.0.1:$2
  maxConnections: 20000
  maxConnectionsPerIp: 20000
http:
  listen: 127.0.0.1:$(($2 + 10))
log:
  level: info
directory:
  baseDN: dc=demo,dc=example
auth:
  offline:
    enabled: $3
    maxAgeMs: 86400000
    checkIntervalMs: 3600000
EOF
}
demo_config "$DIR/gateway-demo.yaml" "$GWD" false
start_gateway "$DIR/gateway-demo.yaml" "$GWD"; GWD_PID=$STARTED
demo_config "$DIR/gateway-demo-offline.yaml" "$GWDO" true
start_gateway "$DIR/gateway-demo-offline.yaml" "$GWDO"; GWDO_PID=$STARTED
UP_PID=$(cat "$DIR/upstream/slapd.pid"); BL_PID=$(cat "$DIR/proxy/slapd.pid")

# What a target's CPU and RSS columns count: its processes and their children (workers: 2 is a supervisor
# and two workers); gw-ha2 is both replicas, HAProxy and Redis; gw-redis is the gateway and Redis.
HA_PIDS="$R1_PID,$R2_PID,$HA_PID,$REDIS_PID"; GWR_PIDS="$GWR_PID,$REDIS_PID"
tree() { local p; for p in ${1//,/ }; do echo "$p"; pgrep -P "$p" 2>/dev/null || true; done; }
ticks() { local t=0 p; for p in $(tree "$1"); do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
rss_mib() { local k=0 p; for p in $(tree "$1"); do k=$((k + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $((k / 1024)); }

echo "scenario,threads,rep,target,ops_per_s,p50_ms,p99_ms,errors,proxy_cpu_us_per_op,proxy_rss_mib" > "$CSV"
cell() {  # scenario threads rep target port pid(proxy or 0) ldlat-args...
  local sc=$1 n=$2 rep=$3 tg=$4 port=$5 pid=$6; shift 6
  local t0=0 t1=0 line
  [ "$pid" != 0 ] && t0=$(ticks "$pid")
  line=$("$LDLAT" -H "ldap://127.0.0.1:$port/" -n "$n" -d "$DUR" -W "$WARM" -D "cn=admin,$BASE" -w bench-secret "$@")   # later options win
  [ "$pid" != 0 ] && t1=$(ticks "$pid")
  echo "$line" | awk -v sc="$sc" -v n="$n" -v rep="$rep" -v tg="$tg" -v dt=$((t1 - t0)) -v hz="$HZ" -v dur="$DUR" -v warm="$WARM" -v rss="$( [ "$pid" != 0 ] && rss_mib "$pid" || echo 0)" -v csv="$CSV" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      ops = v["ops"] * (dur + warm) / dur   # the tick delta includes the warm-up second(s)
      cpu = (ops > 0 && dt > 0) ? dt / hz * 1e6 / ops : 0
      printf "%s,%s,%s,%s,%s,%s,%s,%s,%.0f,%s\n", sc, n, rep, tg, v["ops_per_s"], v["p50"], v["p99"], v["errors"], cpu, rss >> csv
      printf "  %-7s n=%-2s rep=%s %-9s %9.0f ops/s  p50 %6s ms  p99 %7s ms  errors %s  proxy cpu %4.0f us/op  rss %s MiB\n", sc, n, rep, tg, v["ops_per_s"], v["p50"], v["p99"], v["errors"], cpu, rss
    }'
}

for sc in $SCENARIOS; do
  [ "$sc" = none ] && continue
  for n in $THREADS; do
    for rep in $(seq "$REPEATS"); do
      case $sc in
        rebind|bind|search) m=$sc; range=(-R "$N_USERS") ;;
        cached) m=search; range=(-r 1 -R 50) ;;
        outbox|redis) m=rebind; range=(-R "$N_USERS") ;;
        offline) m=rebind; range=(-L alice,bob,carol -P demo-password) ;;
        *) log "unknown scenario '$sc'"; exit 2 ;;
      esac
      case $sc in
        outbox) pair=("gateway $GW $GW_PID" "gw+outbox $GWO $GWO_PID") ;;
        redis) pair=("gateway $GW $GW_PID" "gw-redis $GWR $GWR_PIDS") ;;
        offline) pair=("demo $GWD $GWD_PID" "demo+offline $GWDO $GWDO_PID") ;;
        *) pair=() ;;
      esac
      if [ ${#pair[@]} -gt 0 ]; then
        # before a pair's first cell, one unrecorded cell on each side: the plain gateway comes here with
        # its caches (bind names) warm from the cells before, the variant (a process of its own) would not
        if [ "$rep" = 1 ]; then
          for tp in "${pair[@]}"; do
            read -r tg port pid <<< "$tp"
            "$LDLAT" -H "ldap://127.0.0.1:$port/" -n "$n" -d "$DUR" -W "$WARM" -D "cn=admin,$BASE" -w bench-secret -m "$m" "${range[@]}" > /dev/null
          done
        fi
        # the order within a pair alternates over the repeats, so neither side always runs second
        [ $((rep % 2)) = 0 ] && pair=("${pair[1]}" "${pair[0]}")
        for tp in "${pair[@]}"; do
          read -r tg port pid <<< "$tp"
          cell "$sc" "$n" "$rep" "$tg" "$port" "$pid" -m "$m" "${range[@]}"
        done
      else
        cell "$sc" "$n" "$rep" direct "$UP" 0 -m "$m" "${range[@]}"
        cell "$sc" "$n" "$rep" back-ldap "$BL" "$BL_PID" -m "$m" "${range[@]}"
        cell "$sc" "$n" "$rep" gateway "$GW" "$GW_PID" -m "$m" "${range[@]}"
        cell "$sc" "$n" "$rep" gw-workers2 "$GWW" "$GWW_PID" -m "$m" "${range[@]}"
        cell "$sc" "$n" "$rep" gw-ha2 "$HA" "$HA_PIDS" -m "$m" "${range[@]}"
      fi
    done
  done
done

if [ "${BENCH_AD:-0}" = 1 ]; then
  # Searches against Active Directory itself (Samba AD from the test bed, cloned at 127.0.0.31): the
  # gateway's cache answers repeats without AD's per-search cost.
  SAMBA="$root/test/testbed/samba-ad-testbed.sh"
  TPL=$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}"/ldap-gateway/samba-template-* 2>/dev/null | head -1)
  [ -n "$TPL" ] || { log "BENCH_AD=1 needs the Samba template: run npm test once"; exit 3; }
  rm -rf "$DIR/samba"
  SAMBA_IP=127.0.0.31 bash "$SAMBA" clone "$TPL" "$DIR/samba" >&2
  bash "$SAMBA" up "$DIR/samba" >&2
  trap 'bash "$SAMBA" down "$DIR/samba" >/dev/null 2>&1 || true; cleanup' EXIT INT TERM
  eval "$(bash "$SAMBA" env "$DIR/samba")"
  cat > "$DIR/gateway-ad.yaml" <<EOF
listen: { ldap: "127.0.0.1:3893" }
log: { level: info }
upstream:
  urls: [ "$SAMBA_AD_URL" ]
  bind: { dn: "$SAMBA_AD_SERVICE_DN", password: "$SAMBA_AD_USER_PASS" }
  baseDN: "$SAMBA_AD_BASE_DN"
directory:
  baseDN: dc=vpn,dc=example,dc=test
consumers:
  - { name: probe, bindDN: "cn=probe,dc=vpn,dc=example,dc=test", password: probe-secret-1 }
EOF
  start_gateway "$DIR/gateway-ad.yaml" 3893; GWA_PID=$STARTED
  for n in $THREADS; do
    for rep in $(seq "$REPEATS"); do
      for sc in search-ad cached-ad; do
        [ $sc = cached-ad ] && range=(-r 1 -R 50) || range=(-r 1 -R 1500)
        cell "$sc" "$n" "$rep" direct-ad 389 0 -H "$SAMBA_AD_URL" -m search -b "$SAMBA_AD_BASE_DN" -a sAMAccountName -F bulk%04d -D "$SAMBA_AD_SERVICE_DN" -w "$SAMBA_AD_USER_PASS" "${range[@]}"
        cell "$sc" "$n" "$rep" gateway 3893 "$GWA_PID" -m search -b ou=users,dc=vpn,dc=example,dc=test -a uid -F bulk%04d -D cn=probe,dc=vpn,dc=example,dc=test -w probe-secret-1 "${range[@]}"
      done
    done
  done
fi

log "Defguard full sync (paged S10 + S11), $REPEATS repeat(s) per target"
SYNC="$OUT/sync.txt"; : > "$SYNC"
for rep in $(seq "$REPEATS"); do
  for tp in "direct $UP" "back-ldap $BL" "gateway $GW" "gw-workers2 $GWW" "gw-ha2 $HA"; do
    set -- $tp
    line=$(node bench-dist/bench/sync.js "$2" "cn=admin,$BASE" bench-secret "ou=people,$BASE" "ou=groups,$BASE")
    echo "$1 $line" | tee -a "$SYNC" >&2
  done
done
GW_SYNC_HWM=$(awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$GW_PID/status")

log "$IDLE idle connections to the gateway"
RSS_BEFORE=$(rss_mib "$GW_PID")
node bench-dist/bench/idle.js "$GW" "$IDLE" 4 > "$OUT/idle.txt" &
IDLE_PID=$!; PIDS+=("$IDLE_PID")
for _ in $(seq 600); do grep -q '^open=' "$OUT/idle.txt" 2>/dev/null && break; sleep 0.1; done
sleep 1
RSS_IDLE=$(rss_mib "$GW_PID")
wait "$IDLE_PID" || true
echo "idle: $(cat "$OUT/idle.txt") gateway RSS ${RSS_BEFORE} MiB before, ${RSS_IDLE} MiB with them open" | tee -a "$OUT/idle.txt" >&2

{ echo "# ldap-gateway benchmark ($MODE, $STAMP)"; echo
  echo "Machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); node $(node --version); slapd $(slapd -VV 2>&1 | sed -n 's/.*slapd \([0-9.]*\).*/\1/p' | head -1); $N_USERS users. Cells of ${DUR} s, medians of $REPEATS."
  echo "Gateway peak RSS after the syncs: $GW_SYNC_HWM MiB. Idle connections: $(head -1 "$OUT/idle.txt"); gateway RSS $RSS_BEFORE MiB before, $RSS_IDLE MiB with them open."
  echo
  bash "$here/summary.sh" "$OUT"
} > "$OUT/summary.md"
cat "$OUT/summary.md"

# a smoke run must show the whole path working: any error in a gateway cell fails it, and so does
# Redis having gone away under gw-redis or the replicas (their figures would then be per-process state)
bad=$(awk -F, 'NR > 1 && $4 != "direct" && $4 != "back-ldap" && $8 > 0' "$CSV" | wc -l)
if [ "$bad" -gt 0 ]; then log "gateway cells with errors: $bad (see $CSV)"; exit 1; fi
if grep -l '"up":false' "$OUT/gateway-$GWR.log" "$OUT/gateway-$R1.log" "$OUT/gateway-$R2.log" >&2; then log "Redis was unavailable to a gateway during the run"; exit 1; fi
