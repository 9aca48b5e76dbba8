#!/usr/bin/env bash
# with-servers.sh CMD... - start the real directory servers the integration tests use (a Samba AD DC
# and an OpenLDAP slapd, both on loopback), run CMD with their settings in the environment, and stop
# them by PID however CMD ends. A missing Samba or slapd is a hard failure, never a silent skip.
#
# The populated Samba DC is built once into a template under ~/.cache/ldap-gateway (keyed by the
# testbed script's hash) and cloned per run in about a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for bin in samba samba-tool slapd slappasswd ldapsearch ldapadd openssl; do
  command -v "$bin" >/dev/null || { echo "with-servers: '$bin' is not installed (see the README's test command for the packages to install)" >&2; exit 3; }
done

RUN=$(mktemp -d /tmp/ldap-gateway-test.XXXXXX)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ldap-gateway
TPL=$CACHE/samba-template-$(cat "$here/samba-ad-testbed.sh" | sha256sum | cut -c1-12)
export SAMBA_IP=${LDAP_GATEWAY_TEST_SAMBA_IP:-127.0.0.11}
export SAMBA_BULK_MODE=fast   # simple binds work for bulk users; Kerberos keys are not needed here
export SAMBA_AD_TEMPLATE=$TPL # tests that stop DCs (failover) clone their own from it

cleanup() {
  local rc=$?
  bash "$here/samba-ad-testbed.sh" down "$RUN/samba" >/dev/null 2>&1 || true
  bash "$here/openldap-testbed.sh" down "$RUN/openldap" >/dev/null 2>&1 || true
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
[ -f "$root/certs/server.key" ] || bash "$root/certs/make-dev-cert.sh" >&2
export LDAP_GATEWAY_TESTBED=1
echo "with-servers: Samba AD at $SAMBA_AD_URL, OpenLDAP at $OPENLDAP_URL (ready in $(( $(date +%s) - t0 )) s)" >&2

"$@"
