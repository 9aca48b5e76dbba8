#!/usr/bin/env bash
# with-servers.sh CMD... - start the real servers the integration tests use (a Samba AD DC, an OpenLDAP
# slapd and a Redis, all on loopback), run CMD with their settings in the environment, and stop them by
# PID however CMD ends. A missing Samba, slapd or redis-server is a hard failure, never a silent skip.
#
# The populated Samba DC is built once into a template under ~/.cache/ldap-gateway (keyed by the
# testbed script's hash) and cloned per run in about a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for bin in samba samba-tool slapd slappasswd ldapsearch ldapadd openssl redis-server redis-cli; do
  command -v "$bin" >/dev/null || { echo "with-servers: '$bin' is not installed (see the README's test command for the packages to install)" >&2; exit 3; }
done

RUN=$(mktemp -d /tmp/ldap-gateway-test.XXXXXX)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ldap-gateway
TPL=$CACHE/samba-template-$(cat "$here/samba-ad-testbed.sh" | sha256sum | cut -c1-12)
export SAMBA_IP=${LDAP_GATEWAY_TEST_SAMBA_IP:-127.0.0.11}
export SAMBA_BULK_MODE=fast   # simple binds work for bulk users; Kerberos keys are not needed here
export SAMBA_AD_TEMPLATE=$TPL # tests that stop DCs (failover) clone their own from it
REDIS_IP=${LDAP_GATEWAY_TEST_REDIS_IP:-127.0.0.31}
REDIS_PORT=6379
REDIS_PID=

cleanup() {
  local rc=$?
  bash "$here/samba-ad-testbed.sh" down "$RUN/samba" >/dev/null 2>&1 || true
  bash "$here/openldap-testbed.sh" down "$RUN/openldap" >/dev/null 2>&1 || true
  if [ -n "$REDIS_PID" ]; then
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$REDIS_PID" 2>/dev/null || true
  fi
  rm -rf "$RUN"
  exit $rc
}
trap cleanup EXIT INT TERM

t0=$(date +%s)
mkdir -p "$CACHE"
# templates of earlier testbed versions are never used again
find "$CACHE" -maxdepth 1 -name 'samba-template-*' ! -name "$(basename "$TPL")" -exec rm -rf {} + 2>/dev/null || true
if [ ! -f "$TPL/.populated" ]; then
  echo "with-servers: building the Samba AD template (once per testbed version)" >&2
  rm -rf "$TPL"
  bash "$here/samba-ad-testbed.sh" up "$TPL" >&2
  bash "$here/samba-ad-testbed.sh" down "$TPL" >&2
fi
bash "$here/samba-ad-testbed.sh" clone "$TPL" "$RUN/samba" >&2
bash "$here/samba-ad-testbed.sh" up "$RUN/samba" >&2
eval "$(bash "$here/samba-ad-testbed.sh" env "$RUN/samba")"
bash "$here/openldap-testbed.sh" up "$RUN/openldap" >&2
eval "$(bash "$here/openldap-testbed.sh" env "$RUN/openldap")"
# Redis as the replicas' shared state wants it (config/README.md): every write on disk before it is
# answered (appendonly, appendfsync always); everything it writes stays in $RUN/redis
mkdir -p "$RUN/redis"
cat > "$RUN/redis/redis.conf" <<EOF
bind $REDIS_IP
port $REDIS_PORT
protected-mode no
dir $RUN/redis
appendonly yes
appendfsync always
save ""
daemonize no
logfile $RUN/redis/redis.log
EOF
redis-server "$RUN/redis/redis.conf" &
REDIS_PID=$!
for _ in $(seq 100); do
  [ "$(redis-cli -h "$REDIS_IP" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
  kill -0 "$REDIS_PID" 2>/dev/null || { echo "with-servers: redis-server exited: $(tail -3 "$RUN/redis/redis.log" 2>/dev/null)" >&2; exit 3; }
  sleep 0.1
done
[ "$(redis-cli -h "$REDIS_IP" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || { echo "with-servers: redis-server on $REDIS_IP:$REDIS_PORT did not answer" >&2; exit 3; }
export REDIS_URL="redis://$REDIS_IP:$REDIS_PORT"

[ -f "$root/certs/server.key" ] || bash "$root/certs/make-dev-cert.sh" >&2
export LDAP_GATEWAY_TESTBED=1
echo "with-servers: Samba AD at $SAMBA_AD_URL, OpenLDAP at $OPENLDAP_URL, Redis at $REDIS_URL (ready in $(( $(date +%s) - t0 )) s)" >&2

"$@"
