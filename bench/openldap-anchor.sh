#!/usr/bin/env bash
# openldap-anchor.sh -- OpenLDAP performance anchor for the LDAP proxy project.
# Adopted from shared/testbed (reference/perf-anchor.md); bench/run.sh drives it. Added: 'ldlat DIR'
# builds the C probe only.
#
#   openldap-anchor.sh up     DIR            build (once) + start upstream/proxy/proxy-rwm slapds
#   openldap-anchor.sh down   DIR            stop ONLY the slapds whose PIDs DIR's pid files record
#   openldap-anchor.sh status DIR            show recorded PIDs / liveness
#   openldap-anchor.sh bench  DIR PORT [PORT...]
#                                            run the ldclt suites (bind, search) against PORT(s);
#                                            with several ports the runs are interleaved and the
#                                            ratio to the FIRST port is printed.
#   openldap-anchor.sh latency DIR PORT [PORT...]
#                                            same idea with the embedded C probe "ldlat" (built into
#                                            DIR/ldlat; needs gcc + libldap-dev): p50/p90/p99 latency,
#                                            plus "rebind" (bind on a kept-open connection).
#
# Topology (all 127.0.0.1 only):
#   upstream   slapd back-mdb + memberof, dc=example,dc=test      :$UP_PORT   (3890)
#   proxy      slapd back-ldap -> upstream                         :$PROXY_PORT (3891)
#   proxy-rwm  slapd back-ldap + slapo-rwm (sAMAccountName<->uid) :$RWM_PORT   (3892)
# Data: uid=user0001..userNNNN,ou=people (password pwNNNN, {SSHA} via slappasswd),
#       cn=group00..,ou=groups (groupOfNames, ~80 members each), memberOf precomputed.
#
# bench knobs (env): SUITES="bind search"  THREADS="1 4 16"  SAMPLES=3 (x10 s per run)
#                    REPEATS=3  WARMUP=1  SEARCH_BIND_DN/SEARCH_BIND_PW (default user0001)
#                    QUIET_MAX=15 QUIET_WAIT=60: before each run wait (<= QUIET_WAIT s) until
#                    the host is < QUIET_MAX % busy -- the box may be shared with other jobs
#                    For a port that is not one of ours (e.g. the TS proxy) the "proxy" CPU columns
#                    are taken from the process listening on it (ss -ltnp), or from TARGET_PID=<pid>.
# latency knobs (env): MODES="bind rebind search"  THREADS="1 4 16"  DUR=10  WARM=1  REPEATS=2
# Requires: slapd, ldap-utils, 389-ds-base (/usr/bin/ldclt), python3.
set -euo pipefail

UP_PORT=${UP_PORT:-3890}
PROXY_PORT=${PROXY_PORT:-3891}
RWM_PORT=${RWM_PORT:-3892}
N_USERS=${N_USERS:-2000}
N_GROUPS=${N_GROUPS:-50}
BASE="dc=example,dc=test"
INSTANCES="upstream proxy proxy-rwm"

die() { echo "error: $*" >&2; exit 1; }
abs() { mkdir -p "$1" && (cd "$1" && pwd -P); }

port_of() {
  case "$1" in upstream) echo "$UP_PORT";; proxy) echo "$PROXY_PORT";; proxy-rwm) echo "$RWM_PORT";; esac
}

# true if pid exists and is not a zombie (PID 1 here may reap late)
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# PID recorded in DIR/<inst>/slapd.pid, printed only if that process is alive AND is a
# slapd started with DIR/<inst>/slapd.conf (so we never touch anybody else's process).
own_pid() {
  local dir=$1 inst=$2 pf pid cmd
  pf="$dir/$inst/slapd.pid"
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline")
  [[ "$cmd" == *slapd* && "$cmd" == *"$dir/$inst/slapd.conf"* ]] || return 1
  echo "$pid"
}

write_gen_ldif() {
  cat > "$1" <<'PYEOF'
#!/usr/bin/env python3
"""Generate the anchor data set: ou=people (N users) + ou=groups (G groups).
usage: gen-ldif.py [N_USERS=2000] [N_GROUPS=50] > data.ldif
user i (1..N): uid=userNNNN, password pwNNNN ({SSHA} from slappasswd),
member of group (i % G) and group ((i * G // N) % G)  -> ~2*N/G members/group.
memberOf is written directly (slapadd -q bypasses the memberof overlay)."""
import subprocess, sys
from concurrent.futures import ThreadPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
G = int(sys.argv[2]) if len(sys.argv) > 2 else 50
BASE = "dc=example,dc=test"

def ssha(pw):
    return subprocess.run(["slappasswd", "-h", "{SSHA}", "-s", pw],
                          check=True, capture_output=True, text=True).stdout.strip()

with ThreadPoolExecutor(max_workers=8) as ex:
    hashes = list(ex.map(ssha, ["pw%04d" % i for i in range(1, N + 1)]))

def gname(g): return "cn=group%02d,ou=groups,%s" % (g, BASE)
groups = {g: [] for g in range(G)}
user_groups = {}
for i in range(1, N + 1):
    gs = sorted({i % G, (i * G // N) % G})
    user_groups[i] = gs
    for g in gs:
        groups[g].append("uid=user%04d,ou=people,%s" % (i, BASE))

out = sys.stdout
out.write(f"""dn: {BASE}
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example Test
dc: example

dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE}
objectClass: organizationalUnit
ou: groups

""")
for i in range(1, N + 1):
    u = "user%04d" % i
    out.write(f"dn: uid={u},ou=people,{BASE}\nobjectClass: inetOrgPerson\n"
              f"uid: {u}\ncn: User {i:04d}\nsn: Surname{i:04d}\ngivenName: Given{i:04d}\n"
              f"mail: {u}@example.test\nuserPassword: {hashes[i-1]}\n")
    for g in user_groups[i]:
        out.write(f"memberOf: {gname(g)}\n")
    out.write("\n")
for g in range(G):
    out.write(f"dn: {gname(g)}\nobjectClass: groupOfNames\ncn: group{g:02d}\n")
    for m in groups[g]:
        out.write(f"member: {m}\n")
    out.write("\n")
PYEOF
  chmod +x "$1"
}

write_configs() {
  local dir=$1 rootpw
  mkdir -p "$dir/upstream/db" "$dir/proxy" "$dir/proxy-rwm"
  if [ ! -s "$dir/upstream/slapd.conf" ]; then
    rootpw=$(slappasswd -h '{SSHA}' -s bench-secret)
    cat > "$dir/upstream/slapd.conf" <<EOF
# upstream: back-mdb + memberof, $BASE, ldap://127.0.0.1:$UP_PORT/
include         /etc/ldap/schema/core.schema
include         /etc/ldap/schema/cosine.schema
include         /etc/ldap/schema/inetorgperson.schema
include         /etc/ldap/schema/nis.schema
modulepath      /usr/lib/ldap
moduleload      back_mdb
moduleload      memberof
pidfile         $dir/upstream/slapd.pid
argsfile        $dir/upstream/slapd.args
# no syslogd here; loglevel 0 also keeps logging cost out of the numbers
loglevel        0
threads         16
sizelimit       unlimited

database        mdb
maxsize         1073741824
suffix          "$BASE"
rootdn          "cn=admin,$BASE"
# rootpw = slappasswd -s bench-secret
rootpw          $rootpw
directory       $dir/upstream/db
index           objectClass eq
index           uid,cn,sn,mail eq
index           member,memberOf eq

overlay         memberof
memberof-group-oc    groupOfNames
memberof-member-ad   member
memberof-memberof-ad memberOf
memberof-refint      TRUE

access to attrs=userPassword
        by anonymous auth
        by self write
        by * none
access to *
        by * read
EOF
  fi
  if [ ! -s "$dir/proxy/slapd.conf" ]; then
    cat > "$dir/proxy/slapd.conf" <<EOF
# plain back-ldap proxy: ldap://127.0.0.1:$PROXY_PORT/ -> ldap://127.0.0.1:$UP_PORT/
include         /etc/ldap/schema/core.schema
include         /etc/ldap/schema/cosine.schema
include         /etc/ldap/schema/inetorgperson.schema
include         /etc/ldap/schema/nis.schema
modulepath      /usr/lib/ldap
moduleload      back_ldap
# loaded ONLY to register the memberOf attributeType (no "overlay memberof" here);
# without it the proxy returns "MEMBEROF:" (unknown attr) and rwm drops it entirely
moduleload      memberof
pidfile         $dir/proxy/slapd.pid
argsfile        $dir/proxy/slapd.args
loglevel        0
threads         16
sizelimit       unlimited

database        ldap
suffix          "$BASE"
uri             "ldap://127.0.0.1:$UP_PORT/"
protocol-version 3
chase-referrals no
network-timeout 5
idle-timeout    300
lastmod         off
EOF
  fi
  if [ ! -s "$dir/proxy-rwm/slapd.conf" ]; then
    cat > "$dir/proxy-rwm/sam.schema" <<'EOF'
# minimal AD-ish names, only needed on the proxy (client-facing) side of slapo-rwm
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
        EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
        SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
        EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
        SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP top AUXILIARY
        MAY ( sAMAccountName $ userPrincipalName ) )
EOF
    cat > "$dir/proxy-rwm/slapd.conf" <<EOF
# back-ldap + slapo-rwm: ldap://127.0.0.1:$RWM_PORT/ -> upstream; clients see
# sAMAccountName (=uid), userPrincipalName (=mail), objectClass user (=inetOrgPerson)
include         /etc/ldap/schema/core.schema
include         /etc/ldap/schema/cosine.schema
include         /etc/ldap/schema/inetorgperson.schema
include         /etc/ldap/schema/nis.schema
include         $dir/proxy-rwm/sam.schema
modulepath      /usr/lib/ldap
moduleload      back_ldap
moduleload      rwm
moduleload      memberof
pidfile         $dir/proxy-rwm/slapd.pid
argsfile        $dir/proxy-rwm/slapd.args
loglevel        0
threads         16
sizelimit       unlimited

database        ldap
suffix          "$BASE"
uri             "ldap://127.0.0.1:$UP_PORT/"
protocol-version 3
chase-referrals no
network-timeout 5
idle-timeout    300
lastmod         off

overlay         rwm
# rwm-map {attribute|objectclass} <local (client-visible) name> <foreign (upstream) name>
rwm-map         attribute sAMAccountName uid
rwm-map         attribute userPrincipalName mail
rwm-map         objectclass user inetOrgPerson
EOF
  fi
}

write_ldlat() {   # path.c
  cat > "$1" <<'LDLATEOF'
/* ldlat.c -- tiny closed-loop LDAP latency/throughput probe (libldap, pthreads).
 * Complements ldclt (which reports only ops/s per 10 s sample) with exact
 * per-operation latency percentiles, and adds "rebind" (bind on a kept-open
 * connection), which ldclt cannot do.
 *
 * build: gcc -O2 -Wall -o ldlat ldlat.c -lldap -llber -lpthread   (needs libldap-dev)
 * usage: ldlat -H ldap://127.0.0.1:3890 -m bind|rebind|search [-n threads] [-d secs]
 *              [-W warmup_secs] [-r lo] [-R hi] [-b base] [-a attr]
 *              [-U dn_fmt] [-P pw_fmt] [-D search_bind_dn] [-w search_bind_pw] [-F value_fmt]
 *              [-L name,name,...]   (bind/rebind: bind as these names instead of -U, user u -> name u % count)
 *   bind   : per op: new connection + simple bind as random user + unbind (= ldclt bindeach,bindonly)
 *   rebind : one connection per thread, per op: simple bind as random user on it
 *   search : one connection per thread bound as -D/-w, per op: (attr=userNNNN) subtree, all attrs;
 *            anything but exactly 1 entry counts as an error
 * output: one line, latencies in ms; latency = request start .. response received.
 */
#define LDAP_DEPRECATED 0
#include <ldap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *uri = "ldap://127.0.0.1:3890/", *mode = "search";
static const char *base = "ou=people,dc=example,dc=test", *attr = "uid";
static const char *dnfmt = "uid=user%04d,ou=people,dc=example,dc=test", *pwfmt = "pw%04d";
static const char *sdn = "uid=user0001,ou=people,dc=example,dc=test", *spw = "pw0001";
static const char *valfmt = "user%04d";
static char *names[64]; static int nnames = 0;
static int nthreads = 4, lo = 1, hi = 2000;
static double dur = 10, warm = 2;
static volatile int recording = 0, stop = 0;

typedef struct { unsigned *lat; size_t n, cap; long err; unsigned short seed[3]; } tctx;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void rec(tctx *c, double us) {
  if (!recording) return;
  if (c->n == c->cap) { c->cap = c->cap ? c->cap * 2 : 65536; c->lat = realloc(c->lat, c->cap * sizeof(unsigned)); }
  c->lat[c->n++] = (unsigned)(us + 0.5);
}

static LDAP *open_ld(void) {
  LDAP *ld; int v = LDAP_VERSION3;
  if (ldap_initialize(&ld, uri) != LDAP_SUCCESS) return NULL;
  ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v);
  ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
  return ld;
}

static int simple_bind(LDAP *ld, const char *dn, const char *pw) {
  struct berval cred = { strlen(pw), (char *)pw };
  return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

static void *worker(void *arg) {
  tctx *c = arg; char dn[256], pw[64], filt[192], val[64]; LDAP *ld = NULL;
  if (strcmp(mode, "bind")) {
    ld = open_ld();
    if (!ld) { c->err++; return NULL; }
    if (!strcmp(mode, "search") && simple_bind(ld, sdn, spw) != LDAP_SUCCESS) { c->err++; return NULL; }
  }
  while (!stop) {
    int u = lo + (int)(erand48(c->seed) * (hi - lo + 1)), rc;
    double t0 = now();
    if (strcmp(mode, "search")) {
      if (nnames) snprintf(dn, sizeof dn, "%s", names[u % nnames]); else snprintf(dn, sizeof dn, dnfmt, u);
      snprintf(pw, sizeof pw, pwfmt, u);
    }
    if (!strcmp(mode, "bind")) {
      LDAP *l = open_ld();
      rc = l ? simple_bind(l, dn, pw) : -1;
      double t1 = now();
      if (l) ldap_unbind_ext_s(l, NULL, NULL);
      if (rc == LDAP_SUCCESS) rec(c, (t1 - t0) * 1e6); else if (recording) c->err++;
    } else if (!strcmp(mode, "rebind")) {
      rc = simple_bind(ld, dn, pw);
      double t1 = now();
      if (rc == LDAP_SUCCESS) rec(c, (t1 - t0) * 1e6);
      else { if (recording) c->err++; ldap_unbind_ext_s(ld, NULL, NULL); ld = open_ld(); if (!ld) return NULL; }
    } else {
      LDAPMessage *res = NULL;
      snprintf(val, sizeof val, valfmt, u);
      snprintf(filt, sizeof filt, "(%s=%s)", attr, val);
      rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_SUBTREE, filt, NULL, 0, NULL, NULL, NULL, 0, &res);
      double t1 = now();
      int ne = (rc == LDAP_SUCCESS) ? ldap_count_entries(ld, res) : -1;
      if (res) ldap_msgfree(res);
      if (ne == 1) rec(c, (t1 - t0) * 1e6); else if (recording) c->err++;
    }
  }
  if (ld) ldap_unbind_ext_s(ld, NULL, NULL);
  return NULL;
}

static int cmpu(const void *a, const void *b) { unsigned x = *(const unsigned *)a, y = *(const unsigned *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
  int o;
  while ((o = getopt(argc, argv, "H:m:n:d:W:r:R:b:a:U:P:D:w:F:L:")) != -1) switch (o) {
    case 'F': valfmt = optarg; break;
    case 'L': for (char *t = strtok(strdup(optarg), ","); t && nnames < 64; t = strtok(NULL, ",")) names[nnames++] = t; break;
    case 'H': uri = optarg; break;      case 'm': mode = optarg; break;
    case 'n': nthreads = atoi(optarg); break; case 'd': dur = atof(optarg); break;
    case 'W': warm = atof(optarg); break; case 'r': lo = atoi(optarg); break;
    case 'R': hi = atoi(optarg); break;  case 'b': base = optarg; break;
    case 'a': attr = optarg; break;      case 'U': dnfmt = optarg; break;
    case 'P': pwfmt = optarg; break;     case 'D': sdn = optarg; break;
    case 'w': spw = optarg; break;
    default: fprintf(stderr, "see header of ldlat.c for usage\n"); return 2;
  }
  if (strcmp(mode, "bind") && strcmp(mode, "rebind") && strcmp(mode, "search")) { fprintf(stderr, "bad -m\n"); return 2; }
  pthread_t *th = calloc(nthreads, sizeof *th); tctx *c = calloc(nthreads, sizeof *c);
  for (int i = 0; i < nthreads; i++) {
    c[i].seed[0] = 0x1234 + i; c[i].seed[1] = (unsigned short)getpid(); c[i].seed[2] = (unsigned short)(i * 7919);
    pthread_create(&th[i], NULL, worker, &c[i]);
  }
  usleep((useconds_t)(warm * 1e6));
  double t0 = now(); recording = 1;
  usleep((useconds_t)(dur * 1e6));
  recording = 0; double el = now() - t0; stop = 1;
  size_t tot = 0; long err = 0;
  for (int i = 0; i < nthreads; i++) { pthread_join(th[i], NULL); tot += c[i].n; err += c[i].err; }
  unsigned *all = malloc((tot ? tot : 1) * sizeof(unsigned)); size_t k = 0; double sum = 0;
  for (int i = 0; i < nthreads; i++) { memcpy(all + k, c[i].lat, c[i].n * sizeof(unsigned)); k += c[i].n; }
  for (size_t i = 0; i < tot; i++) sum += all[i];
  qsort(all, tot, sizeof(unsigned), cmpu);
#define P(q) (tot ? all[(size_t)((q) * (tot - 1))] / 1000.0 : 0)
  printf("mode=%s uri=%s threads=%d secs=%.1f ops=%zu ops_per_s=%.1f errors=%ld lat_ms mean=%.3f p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f\n",
         mode, uri, nthreads, el, tot, tot / el, err, tot ? sum / tot / 1000.0 : 0,
         P(0.5), P(0.9), P(0.99), P(0.999), tot ? all[tot - 1] / 1000.0 : 0);
  return 0;
}
LDLATEOF
}

wait_ready() {   # port
  local i
  for i in $(seq 1 100); do
    ldapsearch -x -LLL -H "ldap://127.0.0.1:$1/" -s base -b "" 1.1 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

cmd_up() {
  local dir; dir=$(abs "$1")
  command -v slapd >/dev/null || die "slapd not installed"
  write_configs "$dir"
  [ -x "$dir/gen-ldif.py" ] || write_gen_ldif "$dir/gen-ldif.py"
  if [ ! -s "$dir/data.ldif" ]; then
    echo "generating $N_USERS users / $N_GROUPS groups (slappasswd per user) ..."
    local t0; t0=$(date +%s.%N)
    "$dir/gen-ldif.py" "$N_USERS" "$N_GROUPS" > "$dir/data.ldif.tmp"
    mv "$dir/data.ldif.tmp" "$dir/data.ldif"
    echo "  ldif generated in $(since "$t0") s ($(grep -c '^dn:' "$dir/data.ldif") entries)"
  fi
  if [ ! -s "$dir/upstream/db/data.mdb" ]; then
    own_pid "$dir" upstream >/dev/null && die "upstream running but db missing?"
    local t0; t0=$(date +%s.%N)
    slapadd -q -f "$dir/upstream/slapd.conf" -l "$dir/data.ldif"
    echo "  slapadd -q loaded $(grep -c '^dn:' "$dir/data.ldif") entries in $(since "$t0") s"
  fi
  local inst port pid
  for inst in $INSTANCES; do
    port=$(port_of "$inst")
    if pid=$(own_pid "$dir" "$inst"); then echo "$inst already running pid $pid :$port"; continue; fi
    rm -f "$dir/$inst/slapd.pid"
    if ss -Hltn "sport = :$port" | grep -q .; then die "port $port busy (not ours)"; fi
    slaptest -Q -u -f "$dir/$inst/slapd.conf" || die "slaptest failed for $inst"
    # slapd forks into the background and writes its pidfile; no syslog here, so on a
    # silent failure re-run by hand with: slapd -d 1 -f $dir/$inst/slapd.conf -h ...
    slapd -f "$dir/$inst/slapd.conf" -h "ldap://127.0.0.1:$port/"
    wait_ready "$port" || die "$inst did not come up on :$port (try: slapd -d 1 -f $dir/$inst/slapd.conf -h ldap://127.0.0.1:$port/)"
    echo "$inst started pid $(cat "$dir/$inst/slapd.pid") ldap://127.0.0.1:$port/"
  done
  # smoke tests
  ldapwhoami -x -H "ldap://127.0.0.1:$PROXY_PORT/" -D "uid=user0042,ou=people,$BASE" -w pw0042 >/dev/null \
    && echo "ok: simple bind as uid=user0042 through back-ldap (:$PROXY_PORT)"
  ldapwhoami -x -H "ldap://127.0.0.1:$RWM_PORT/" -D "uid=user0042,ou=people,$BASE" -w pw0042 >/dev/null \
    && echo "ok: simple bind as uid=user0042 through back-ldap+rwm (:$RWM_PORT)"
  ldapsearch -x -LLL -H "ldap://127.0.0.1:$RWM_PORT/" -b "$BASE" '(sAMAccountName=user0042)' sAMAccountName userPrincipalName memberOf \
    | grep -q '^sAMAccountName: user0042' && echo "ok: rwm maps sAMAccountName<->uid (:$RWM_PORT)"
}

cmd_down() {
  local dir; dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no such dir $1"
  local inst pid i
  for inst in $INSTANCES; do
    if pid=$(own_pid "$dir" "$inst"); then
      kill -TERM "$pid"
      for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
      if alive "$pid"; then echo "$inst pid $pid still alive after 10 s, SIGKILL"; kill -KILL "$pid"; fi
      echo "$inst (pid $pid) stopped"
    else
      echo "$inst: no live pid recorded in $dir/$inst/slapd.pid"
    fi
  done
}

cmd_status() {
  local dir; dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no such dir $1"
  local inst pid
  for inst in $INSTANCES; do
    if pid=$(own_pid "$dir" "$inst"); then echo "$inst pid $pid :$(port_of "$inst") up"
    else echo "$inst down"; fi
  done
}

# host-wide "busy idle" jiffies from /proc/stat (busy = everything but idle+iowait)
hostcpu() { awk '/^cpu /{b=0; for(i=2;i<=NF;i++) if(i!=5 && i!=6) b+=$i; print b, $5+$6; exit}' /proc/stat; }

# host busy % (of all CPUs) over the next $1 seconds
busy_over() { local a b; a=$(hostcpu); sleep "$1"; b=$(hostcpu)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," ");split(b,y," ");d=y[1]-x[1];i=y[2]-x[2];printf "%.0f",(d+i>0)?100*d/(d+i):0}'; }

# The box may be shared with other jobs: wait (at most QUIET_WAIT s) until the
# host is below QUIET_MAX % busy; prints the last measured background busy %.
wait_quiet() { local t=0 b; b=$(busy_over 1)
  while [ "$b" -gt "${QUIET_MAX:-15}" ] && [ "$t" -lt "${QUIET_WAIT:-60}" ]; do b=$(busy_over 2); t=$((t+2)); done
  echo "$b"; }

# PID listening on 127.0.0.1:PORT (for CPU accounting of a foreign proxy, e.g. the TS one); 0 if unknown.
# TARGET_PID=<pid> overrides (e.g. when the proxy forks workers, pick the busy one).
listener_pid() {
  if [ -n "${TARGET_PID:-}" ]; then echo "$TARGET_PID"; return; fi
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1 | grep . || echo 0
}

# utime+stime ticks of a pid, all threads (0 if gone)
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# elapsed seconds since t0 (date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

# run one ldclt job (foreground); prints:
#   ops_per_s total_ops wall_s ldclt_cpu_s errors min_sample max_sample
# ldclt's own CPU comes from the subshell's `times` (children user+sys), so it is exact.
run_ldclt() {   # logfile ldclt-args...
  local out=$1; shift
  local t0 wall
  t0=$(date +%s.%N)
  ( ldclt "$@" > "$out" 2>&1; times > "$out.times" ) || true
  wall=$(since "$t0")
  awk -v wall="$wall" -v tf="$out.times" '
    BEGIN { while ((getline l < tf) > 0) { if (++ln == 2) { split(l, f, " ");
              split(f[1], a, /[ms]/); split(f[2], b, /[ms]/); lcpu = a[1]*60 + a[2] + b[1]*60 + b[2] } } }
    /Global average rate/ { s=$0; sub(/.*\(/,"",s); sub(/\/sec.*/,"",s); rate=s; t=$0; sub(/.*total: */,"",t); total=t }
    /Average rate:/ && !/Global/ { s=$0; sub(/.*\(/,"",s); sub(/\/sec.*/,"",s); s+=0;
                                   if (s>0) { if (mn==""||s<mn) mn=s; if (s>mx) mx=s } }
    /Global error/ { e=$0; sub(/.*occurs */,"",e); sub(/ times.*/,"",e); err+=e }
    END { printf "%.1f %d %.2f %.3f %d %.1f %.1f\n", rate, total, wall, lcpu, err+0, mn+0, mx+0 }' "$out"
}

cmd_bench() {
  local dir; dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no such dir $1"; shift
  [ $# -ge 1 ] || die "usage: bench DIR PORT [PORT...]"
  command -v ldclt >/dev/null || die "ldclt (389-ds-base) not installed"
  local ports=("$@")
  local SUITES=${SUITES:-"bind search"} THREADS=${THREADS:-"1 4 16"} SAMPLES=${SAMPLES:-3}
  local REPEATS=${REPEATS:-3} WARMUP=${WARMUP:-1}
  local SBDN=${SEARCH_BIND_DN:-"uid=user0001,ou=people,$BASE"} SBPW=${SEARCH_BIND_PW:-pw0001}
  local hz; hz=$(getconf CLK_TCK)
  local upid ppid rpid
  upid=$(own_pid "$dir" upstream) || die "upstream not running (run: $0 up $dir)"
  ppid=$(own_pid "$dir" proxy || echo 0); rpid=$(own_pid "$dir" proxy-rwm || echo 0)
  local res="$dir/results"; mkdir -p "$res"
  local stamp; stamp=$(date +%Y%m%d-%H%M%S)
  local csv="$res/bench-$stamp.csv"
  echo "suite,port,threads,rep,ops_per_s,total_ops,wall_s,sample_min,sample_max,errors,mean_lat_ms,upstream_cpu_pct,proxy_cpu_pct,ldclt_cpu_pct,upstream_us_per_op,proxy_us_per_op,ldclt_us_per_op,host_busy_pct,other_cpu_pct,bg_busy_pct_before" > "$csv"
  echo "# host: $(nproc) cpu, $(uname -r); slapd $(slapd -VV 2>&1 | sed -n 's/.*slapd \([^ ]*\) .*/\1/p'); ldclt $(ldclt 2>&1 | sed -n 's/ldclt version //p')"
  echo "# SUITES='$SUITES' THREADS='$THREADS' SAMPLES=$SAMPLES (x10s) REPEATS=$REPEATS ports: ${ports[*]}"
  echo "# csv: $csv ; raw ldclt logs: $res/$stamp-*.log"

  ldclt_args() {  # suite port threads
    local suite=$1 port=$2 n=$3 attr=uid
    [ "$port" = "$RWM_PORT" ] && attr=sAMAccountName
    case $suite in
      bind)   echo "-h 127.0.0.1 -p $port -e bindeach,bindonly,randombinddn,randombinddnlow=1,randombinddnhigh=$N_USERS -D uid=userXXXX,ou=people,$BASE -w pwXXXX -n $n" ;;
      search) echo "-h 127.0.0.1 -p $port -b ou=people,$BASE -D $SBDN -w $SBPW -e esearch,random -f $attr=userXXXX -r 1 -R $N_USERS -n $n" ;;
    esac
  }
  proxy_pid_for() {  # which of our proxies serves that port (any other non-upstream port: its listener)
    case "$1" in "$UP_PORT") echo 0;; "$PROXY_PORT") echo "$ppid";; "$RWM_PORT") echo "$rpid";; *) listener_pid "$1";; esac
  }

  if [ "$WARMUP" = 1 ]; then
    local p s
    for p in "${ports[@]}"; do for s in $SUITES; do
      # shellcheck disable=SC2046
      ldclt $(ldclt_args "$s" "$p" 4) -T 1000 -q >/dev/null 2>&1 || true
    done; done
  fi

  local suite n rep port
  for suite in $SUITES; do
    for n in $THREADS; do
      for rep in $(seq 1 "$REPEATS"); do
        for port in "${ports[@]}"; do
          local xpid u0 x0 u1 x1 line log h0 h1 bg
          xpid=$(proxy_pid_for "$port")
          bg=$(wait_quiet)
          h0=$(hostcpu)
          u0=$(ticks "$upid"); x0=0; [ "$xpid" != 0 ] && x0=$(ticks "$xpid")
          log="$res/$stamp-$suite-p$port-n$n-r$rep.log"
          # shellcheck disable=SC2046
          line=$(run_ldclt "$log" $(ldclt_args "$suite" "$port" "$n") -N "$SAMPLES")
          u1=$(ticks "$upid"); x1=0; [ "$xpid" != 0 ] && x1=$(ticks "$xpid")
          h1=$(hostcpu)
          # shellcheck disable=SC2086
          set -- $line   # rate total wall lticks err min max
          awk -v s="$suite" -v p="$port" -v n="$n" -v r="$rep" -v rate="$1" -v tot="$2" -v wall="$3" \
              -v lcpu="$4" -v err="$5" -v mn="$6" -v mx="$7" -v du="$((u1-u0))" -v dx="$((x1-x0))" -v hz="$hz" \
              -v csv="$csv" -v h0="$h0" -v h1="$h1" -v bg="$bg" -v ncpu="$(nproc)" '
            BEGIN {
              lat = (rate>0) ? n*1000/rate : 0
              ucpu=du/hz; xcpu=dx/hz
              split(h0,ha," "); split(h1,hb," "); db=hb[1]-ha[1]; di=hb[2]-ha[2]
              host=(db+di>0)?100*db/(db+di):0
              other=host*ncpu - 100*(ucpu+xcpu+lcpu)/wall; if (other<0) other=0
              printf "%-6s port=%-5s n=%-3s rep=%s %8.1f ops/s [10s samples %.0f..%.0f] lat~%.3f ms err=%d | cpu%% (100=1 core) up=%.0f proxy=%.0f ldclt=%.0f other=%.0f (bg before %d%%) | cpu us/op up=%.1f proxy=%.1f ldclt=%.1f\n",
                s,p,n,r,rate,mn,mx,lat,err,100*ucpu/wall,100*xcpu/wall,100*lcpu/wall,other,bg,
                (tot>0?ucpu*1e6/tot:0),(tot>0?xcpu*1e6/tot:0),(tot>0?lcpu*1e6/tot:0)
              printf "%s,%s,%s,%s,%.1f,%d,%.2f,%.1f,%.1f,%d,%.3f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%d\n",
                s,p,n,r,rate,tot,wall,mn,mx,err,lat,100*ucpu/wall,100*xcpu/wall,100*lcpu/wall,
                (tot>0?ucpu*1e6/tot:0),(tot>0?xcpu*1e6/tot:0),(tot>0?lcpu*1e6/tot:0),host,other,bg >> csv
            }'
        done
      done
    done
  done

  echo
  echo "# summary: mean ops/s over repeats (min..max, cv%), ratio = port / first port (${ports[0]})"
  awk -F, -v first="${ports[0]}" '
    NR==1 {next}
    { k=$1" "$3" "$2; n[k]++; s[k]+=$5; ss[k]+=$5*$5; if(!(k in mn)||$5<mn[k])mn[k]=$5; if($5>mx[k])mx[k]=$5;
      if(!($1" "$3 in seen)){order[++no]=$1" "$3; seen[$1" "$3]=1}
      if(!($2 in pseen)){porder[++np]=$2; pseen[$2]=1} }
    END {
      for(i=1;i<=no;i++){ for(j=1;j<=np;j++){ k=order[i]" "porder[j]; if(!(k in n))continue
          m=s[k]/n[k]; v=ss[k]/n[k]-m*m; if(v<0)v=0; cv=(m>0)?100*sqrt(v)/m:0
          b=order[i]" "first; r=(b in n && s[b]>0)? m/(s[b]/n[b]) : 0
          split(order[i],a," ")
          printf "%-6s n=%-3s port=%-5s %9.1f ops/s  (%.1f..%.1f, cv %.1f%%)  ratio=%.3f\n", a[1],a[2],porder[j],m,mn[k],mx[k],cv,r } }
    }' "$csv"
}

cmd_latency() {
  local dir; dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no such dir $1"; shift
  [ $# -ge 1 ] || die "usage: latency DIR PORT [PORT...]"
  local ports=("$@")
  local MODES=${MODES:-"bind rebind search"} THREADS=${THREADS:-"1 4 16"} DUR=${DUR:-10} WARM=${WARM:-1}
  local REPEATS=${REPEATS:-2}
  if [ ! -x "$dir/ldlat" ]; then
    [ -f /usr/include/ldap.h ] || die "needs libldap-dev (apt-get install libldap-dev) and gcc"
    write_ldlat "$dir/ldlat.c"
    gcc -O2 -Wall -o "$dir/ldlat" "$dir/ldlat.c" -lldap -llber -lpthread || die "ldlat build failed"
  fi
  local hz; hz=$(getconf CLK_TCK)
  local upid ppid rpid
  upid=$(own_pid "$dir" upstream) || die "upstream not running (run: $0 up $dir)"
  ppid=$(own_pid "$dir" proxy || echo 0); rpid=$(own_pid "$dir" proxy-rwm || echo 0)
  local res="$dir/results"; mkdir -p "$res"
  local out; out="$res/latency-$(date +%Y%m%d-%H%M%S).txt"
  echo "# ldlat MODES='$MODES' THREADS='$THREADS' DUR=$DUR REPEATS=$REPEATS ports: ${ports[*]} -> $out"
  local m n rep port attr xpid u0 x0 u1 x1 bg line
  for m in $MODES; do for n in $THREADS; do for rep in $(seq 1 "$REPEATS"); do for port in "${ports[@]}"; do
    attr=uid; [ "$port" = "$RWM_PORT" ] && attr=sAMAccountName
    case "$port" in "$UP_PORT") xpid=0;; "$PROXY_PORT") xpid=$ppid;; "$RWM_PORT") xpid=$rpid;; *) xpid=$(listener_pid "$port");; esac
    bg=$(wait_quiet)
    u0=$(ticks "$upid"); x0=0; [ "$xpid" != 0 ] && x0=$(ticks "$xpid")
    line=$("$dir/ldlat" -H "ldap://127.0.0.1:$port/" -m "$m" -n "$n" -d "$DUR" -W "$WARM" -a "$attr" -R "$N_USERS")
    u1=$(ticks "$upid"); x1=0; [ "$xpid" != 0 ] && x1=$(ticks "$xpid")
    # cpu us/op is approximate here: the warm-up/drain seconds are included in the tick delta
    echo "$line" | awk -v du=$((u1-u0)) -v dx=$((x1-x0)) -v hz="$hz" -v dur="$DUR" -v warm="$WARM" -v bg="$bg" -v port="$port" -v rep="$rep" '
      { for (i=1;i<=NF;i++) { split($i,kv,"="); v[kv[1]]=kv[2] }
        ops=v["ops"]*(dur+warm)/dur
        printf "%-6s port=%-5s n=%-3s rep=%s %8.1f ops/s err=%d lat_ms mean=%s p50=%s p90=%s p99=%s p99.9=%s max=%s | cpu us/op up=%.0f proxy=%.0f (bg %d%%)\n",
          v["mode"],port,v["threads"],rep,v["ops_per_s"],v["errors"],v["mean"],v["p50"],v["p90"],v["p99"],v["p99.9"],v["max"],
          (ops>0?du/hz*1e6/ops:0),(ops>0?dx/hz*1e6/ops:0),bg }' | tee -a "$out"
  done; done; done; done
}

case "${1:-}" in
  up)     [ $# -eq 2 ] || die "usage: $0 up DIR"; cmd_up "$2" ;;
  down)   [ $# -eq 2 ] || die "usage: $0 down DIR"; cmd_down "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DIR"; cmd_status "$2" ;;
  bench)  [ $# -ge 3 ] || die "usage: $0 bench DIR PORT [PORT...]"; shift; cmd_bench "$@" ;;
  latency) [ $# -ge 3 ] || die "usage: $0 latency DIR PORT [PORT...]"; shift; cmd_latency "$@" ;;
  ldlat)  [ $# -eq 2 ] || die "usage: $0 ldlat DIR"; dir=$(abs "$2")
          write_ldlat "$dir/ldlat.c.new"
          if [ ! -x "$dir/ldlat" ] || ! cmp -s "$dir/ldlat.c.new" "$dir/ldlat.c"; then   # (re)build when the source changed
            [ -f /usr/include/ldap.h ] || die "needs libldap-dev (apt-get install libldap-dev) and gcc"
            mv "$dir/ldlat.c.new" "$dir/ldlat.c"
            gcc -O2 -Wall -o "$dir/ldlat" "$dir/ldlat.c" -lldap -llber -lpthread >&2 || die "ldlat build failed"
          fi
          rm -f "$dir/ldlat.c.new"
          echo "$dir/ldlat" ;;
  *) sed -n '2,30p' "$0"; exit 2 ;;
esac
