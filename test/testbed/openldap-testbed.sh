#!/usr/bin/env bash
# openldap-testbed.sh - throwaway OpenLDAP slapd on loopback with an inetOrgPerson / groupOfNames
# directory equivalent to the Samba fixture set (same people, nested groups, memberOf by the overlay).
#
#   openldap-testbed.sh up   DIR   write config, start slapd, load the data (first time); idempotent
#   openldap-testbed.sh down DIR   stop the slapd started by 'up' (signals only the PID it recorded)
#   openldap-testbed.sh env  DIR   print shell exports for tests
#
# Knobs: OPENLDAP_URL (default ldap://127.0.0.21:3389), OPENLDAP_BASE (dc=example,dc=org),
#        OPENLDAP_BULK_USERS (default 0), OPENLDAP_SIZELIMIT (default 500: the server-side size limit).
# Needs: slapd, ldap-utils. Writes nothing outside DIR.
set -euo pipefail

die() { echo "openldap-testbed: $*" >&2; exit 1; }
log() { echo "openldap-testbed: $*" >&2; }

CMD=${1:-}; DIR=${2:-}
[ -n "$CMD" ] && [ -n "$DIR" ] || die "usage: $0 up|down|env DIR"
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
[ -f "$DIR/testbed.env" ] && . "$DIR/testbed.env"
URL=${OPENLDAP_URL:-ldap://127.0.0.21:3389}
BASE=${OPENLDAP_BASE:-dc=example,dc=org}
BULK=${OPENLDAP_BULK_USERS:-0}
SIZELIMIT=${OPENLDAP_SIZELIMIT:-500}
ADMIN_DN="cn=admin,$BASE"
ADMIN_PASS='Adm1n-OpenLDAP'
USER_PASS='Passw0rd!'
SERVICE_DN="cn=svc-gateway,ou=services,$BASE"
PIDF=$DIR/slapd.pid

our_pid() {
  local pid; pid=$(cat "$PIDF" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "slapd -f $DIR/slapd.conf" || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$DIR/db"
  local hash; hash=$(slappasswd -s "$ADMIN_PASS")
  cat > "$DIR/slapd.conf" <<EOF
include   /etc/ldap/schema/core.schema
include   /etc/ldap/schema/cosine.schema
include   /etc/ldap/schema/inetorgperson.schema
include   /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile   $PIDF
argsfile  $DIR/slapd.args
loglevel  0
sizelimit $SIZELIMIT
database  mdb
maxsize   268435456
suffix    "$BASE"
rootdn    "$ADMIN_DN"
rootpw    $hash
directory $DIR/db
# the gateway's service account lists whole directories; everyone else keeps the server's size limit
limits    dn.exact="$SERVICE_DN" size=unlimited
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by users read by * none
overlay   memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
EOF
  printf 'OPENLDAP_URL=%q\nOPENLDAP_BASE=%q\nOPENLDAP_BULK_USERS=%q\nOPENLDAP_SIZELIMIT=%q\n' "$URL" "$BASE" "$BULK" "$SIZELIMIT" > "$DIR/testbed.env"
}

ldap_up() { ldapsearch -x -o nettimeout=2 -H "$URL" -s base -b '' namingContexts >/dev/null 2>&1; }

start() {
  local pid i
  if pid=$(our_pid); then log "already running (pid $pid)"; return 0; fi
  rm -f "$PIDF"
  slaptest -Q -u -f "$DIR/slapd.conf" || die "slaptest rejected $DIR/slapd.conf (run: slapd -d 1 -f $DIR/slapd.conf -h $URL)"
  slapd -f "$DIR/slapd.conf" -h "$URL" || die "slapd failed to start (run: slapd -d 1 -f $DIR/slapd.conf -h $URL)"
  for ((i = 0; i < 100; i++)); do ldap_up && break; sleep 0.1; done
  ldap_up || die "slapd not answering on $URL"
  log "slapd pid $(cat "$PIDF") on $URL"
}

stop() {
  local pid i
  pid=$(our_pid) || { log "not running"; rm -f "$PIDF"; return 0; }
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do our_pid >/dev/null || break; sleep 0.1; done
  our_pid >/dev/null && { log "pid $pid ignored SIGTERM, sending SIGKILL"; kill -KILL "$pid"; }
  rm -f "$PIDF"
  log "stopped pid $pid"
}

populate() {
  local pw; pw=$(slappasswd -s "$USER_PASS")
  local svcpw; svcpw=$(slappasswd -s "$USER_PASS")
  {
    cat <<EOF
dn: $BASE
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: $(echo "${BASE%%,*}" | cut -d= -f2)

dn: ou=people,$BASE
objectClass: organizationalUnit
ou: people

dn: ou=contractors,$BASE
objectClass: organizationalUnit
ou: contractors

dn: ou=groups,$BASE
objectClass: organizationalUnit
ou: groups

dn: ou=services,$BASE
objectClass: organizationalUnit
ou: services

dn: $SERVICE_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc-gateway
userPassword: $svcpw

EOF
    person() {  # uid ou given sn mail mobile
      printf 'dn: uid=%s,ou=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s %s\ngivenName: %s\nsn: %s\nuserPassword: %s\n' \
        "$1" "$2" "$BASE" "$1" "$3" "$4" "$3" "$4" "$pw"
      [ -n "$5" ] && printf 'mail: %s\n' "$5"
      [ -n "$6" ] && printf 'mobile: %s\n' "$6"
      printf '\n'
    }
    person alice people Alice Anderson alice@example.org '+1 555 1101'
    person bob people Bob Brown bob@example.org '+1 555 1102'
    person carol people Carol Clark carol@example.org ''
    person jmuller people 'José' 'Müller' jmuller@example.org '+49 170 1234'
    person jdoe contractors John Doe john.doe@example.org '+1 555 0199'
    local i
    for ((i = 1; i <= BULK; i++)); do person "$(printf 'bulk%04d' "$i")" people Bulk "$(printf 'User%04d' "$i")" "$(printf 'bulk%04d@example.org' "$i")" ''; done
    cat <<EOF
dn: cn=Engineering,ou=groups,$BASE
objectClass: groupOfNames
cn: Engineering
member: uid=alice,ou=people,$BASE
member: uid=bob,ou=people,$BASE

dn: cn=Staff,ou=groups,$BASE
objectClass: groupOfNames
cn: Staff
member: cn=Engineering,ou=groups,$BASE
member: uid=carol,ou=people,$BASE
member: uid=jmuller,ou=people,$BASE

dn: cn=AllEmployees,ou=groups,$BASE
objectClass: groupOfNames
cn: AllEmployees
member: cn=Staff,ou=groups,$BASE
EOF
  } > "$DIR/data.ldif"
  # loaded online, so that the memberof overlay computes memberOf
  ldapadd -x -H "$URL" -D "$ADMIN_DN" -w "$ADMIN_PASS" -f "$DIR/data.ldif" > "$DIR/populate.log" 2>&1 || die "ldapadd failed: $(tail -3 "$DIR/populate.log")"
  touch "$DIR/.populated"
}

case "$CMD" in
  up) [ -f "$DIR/slapd.conf" ] || write_config; start; [ -f "$DIR/.populated" ] || populate ;;
  down) stop ;;
  env)
    cat <<EOF
export OPENLDAP_URL='$URL'
export OPENLDAP_BASE_DN='$BASE'
export OPENLDAP_ADMIN_DN='$ADMIN_DN'
export OPENLDAP_ADMIN_PASS='$ADMIN_PASS'
export OPENLDAP_SERVICE_DN='$SERVICE_DN'
export OPENLDAP_USER_PASS='$USER_PASS'
EOF
    ;;
  *) die "unknown command $CMD (up|down|env)" ;;
esac
