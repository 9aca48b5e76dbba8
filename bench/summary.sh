#!/usr/bin/env bash
# summary.sh RESULTS_DIR -- the tables of a bench run, from its cells.csv and sync.txt: medians over
# repeats; the targets side by side (gateway, workers:2, two replicas behind HAProxy) with their ratios to
# back-ldap and to one process; then the paired comparisons (outbox, Redis state, offline binds) as
# variant/base ratios. A target missing from a run (an older CSV) shows as –.
set -euo pipefail
OUT=$1
CSV="$OUT/cells.csv"
SYNC="$OUT/sync.txt"
awk -F, '
  NR > 1 { k = $1 SUBSEP $2 SUBSEP $4; n[k]++; ops[k, n[k]] = $5; p50[k, n[k]] = $6; p99[k, n[k]] = $7; cpu[k, n[k]] = $9; rss[k, n[k]] = $10
           if (!($1 SUBSEP $2 in seen)) { order[++o] = $1 SUBSEP $2; seen[$1 SUBSEP $2] = 1 } }
  function med(a, k,    i, j, t, m, x) { m = n[k]; for (i = 1; i <= m; i++) x[i] = a[k, i] + 0; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t } return m ? x[int((m + 1) / 2)] : 0 }
  function has(k) { return n[k] > 0 }
  function O(k) { return has(k) ? sprintf("%.0f", med(ops, k)) : "–" }
  function L(a, k) { return has(k) ? med(a, k) : "–" }
  function C(k) { return has(k) ? sprintf("%.0f", med(cpu, k)) : "–" }
  function R(x, y) { return has(x) && has(y) && med(ops, y) > 0 ? sprintf("%.2f", med(ops, x) / med(ops, y)) : "–" }
  END {
    print "| scenario | n | direct ops/s | back-ldap ops/s | gateway ops/s | workers:2 ops/s | 2 replicas + HAProxy ops/s | gw/back-ldap | w2/back-ldap | w2/gw | ha2/back-ldap | ha2/gw | gw/direct | p50 ms direct / back-ldap / gw / w2 / ha2 | p99 ms direct / back-ldap / gw / w2 / ha2 | CPU µs/op gw / w2 / ha2 | gw RSS MiB |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= o; i++) {
      split(order[i], sn, SUBSEP)
      if (sn[1] ~ /-ad$/ || sn[1] == "outbox" || sn[1] == "redis" || sn[1] == "offline") continue
      d = order[i] SUBSEP "direct"; b = order[i] SUBSEP "back-ldap"; g = order[i] SUBSEP "gateway"; w = order[i] SUBSEP "gw-workers2"; h = order[i] SUBSEP "gw-ha2"
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s / %s / %s | %s / %s / %s / %s / %s | %s / %s / %s | %s |\n", sn[1], sn[2], O(d), O(b), O(g), O(w), O(h), R(g, b), R(w, b), R(w, g), R(h, b), R(h, g), R(g, d), L(p50, d), L(p50, b), L(p50, g), L(p50, w), L(p50, h), L(p99, d), L(p99, b), L(p99, g), L(p99, w), L(p99, h), C(g), C(w), C(h), L(rss, g)
    }
    print ""
    print "| comparison | n | base | base ops/s | variant | variant ops/s | variant/base | p50 ms base / variant | p99 ms base / variant | CPU µs/op base / variant |"
    print "|---|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= o; i++) {
      split(order[i], sn, SUBSEP)
      if (sn[1] == "outbox") { what = "rebind recording an event each (dedupe off)"; bt = "gateway"; vt = "gw+outbox" }
      else if (sn[1] == "redis") { what = "rebind, state on Redis vs memory (target ≥ 0.85)"; bt = "gateway"; vt = "gw-redis" }
      else if (sn[1] == "offline") { what = "rebind, offline binds on vs off (demo directory; target ≥ 0.90)"; bt = "demo"; vt = "demo+offline" }
      else if (sn[1] ~ /-ad$/) { what = sn[1] " (Samba AD upstream)"; bt = "direct-ad"; vt = "gateway" }
      else continue
      x = order[i] SUBSEP bt; y = order[i] SUBSEP vt
      printf "| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s |\n", what, sn[2], bt, O(x), vt, O(y), R(y, x), L(p50, x), L(p50, y), L(p99, x), L(p99, y), C(x), C(y)
    }
  }' "$CSV"
if [ -s "$SYNC" ]; then
  echo
  echo "Defguard full sync (S10 + S11, paged at 500), median seconds per sync:"
  awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } s[$1, ++n[$1]] = v["secs"]; e[$1] = v["users"] "+" v["groups"] }
    function med(t,    i, j, x, m, tmp) { m = n[t]; for (i = 1; i <= m; i++) x[i] = s[t, i] + 0; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] < x[i]) { tmp = x[i]; x[i] = x[j]; x[j] = tmp } return x[int((m + 1) / 2)] }
    END { for (t in n) printf "- %s: %.2f s (%s users+groups)\n", t, med(t), e[t] }' "$SYNC" | sort
fi
