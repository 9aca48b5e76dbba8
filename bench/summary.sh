#!/usr/bin/env bash
# summary.sh RESULTS_DIR -- the tables of a bench run, from its cells.csv and sync.txt:
# medians over repeats, ratios gateway/direct and gateway/back-ldap.
set -euo pipefail
OUT=$1
CSV="$OUT/cells.csv"
SYNC="$OUT/sync.txt"
echo "| scenario | n | direct ops/s | back-ldap ops/s | gateway ops/s | gw/direct | gw/back-ldap | workers:2 ops/s | w2/back-ldap | p50 ms direct / back-ldap / gw / w2 | p99 ms direct / back-ldap / gw / w2 | gw CPU µs/op | w2 CPU µs/op | gw RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
awk -F, 'NR > 1 { k = $1 SUBSEP $2 SUBSEP $4; n[k]++; ops[k, n[k]] = $5; p50[k, n[k]] = $6; p99[k, n[k]] = $7; cpu[k, n[k]] = $9; rss[k, n[k]] = $10; if (!($1 SUBSEP $2 in seen)) { order[++o] = $1 SUBSEP $2; seen[$1 SUBSEP $2] = 1 } }
  function med(a, k,    i, j, t, m, x) { m = n[k]; for (i = 1; i <= m; i++) x[i] = a[k, i] + 0; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t } return m ? x[int((m + 1) / 2)] : 0 }
  END {
    for (i = 1; i <= o; i++) {
      split(order[i], sn, SUBSEP); d = order[i] SUBSEP "direct"; b = order[i] SUBSEP "back-ldap"; g = order[i] SUBSEP "gateway"; go = order[i] SUBSEP "gw+outbox"; w = order[i] SUBSEP "gw-workers2"
      if (sn[1] ~ /-ad$/) {
        da = order[i] SUBSEP "direct-ad"
        printf "| %s (Samba AD upstream) | %s | %.0f | | %.0f | %.2f | | | | %s / – / %s | %s / – / %s | %.0f | | %s |\n", sn[1], sn[2], med(ops, da), med(ops, g), med(ops, da) ? med(ops, g) / med(ops, da) : 0, med(p50, da), med(p50, g), med(p99, da), med(p99, g), med(cpu, g), med(rss, g)
        continue
      }
      if (sn[1] == "outbox") {
        printf "| outbox: rebind recording an event each | %s | | plain gw %.0f | gw+outbox %.0f | | outbox/plain %.2f | | | %s / %s (plain / outbox) | %s / %s (plain / outbox) | %.0f / %.0f | | %s |\n", sn[2], med(ops, g), med(ops, go), med(ops, g) ? med(ops, go) / med(ops, g) : 0, med(p50, g), med(p50, go), med(p99, g), med(p99, go), med(cpu, g), med(cpu, go), med(rss, go)
        continue
      }
      printf "| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f | %.2f | %s / %s / %s / %s | %s / %s / %s / %s | %.0f | %.0f | %s |\n", sn[1], sn[2], med(ops, d), med(ops, b), med(ops, g), med(ops, d) ? med(ops, g) / med(ops, d) : 0, med(ops, b) ? med(ops, g) / med(ops, b) : 0, med(ops, w), med(ops, b) ? med(ops, w) / med(ops, b) : 0, med(p50, d), med(p50, b), med(p50, g), med(p50, w), med(p99, d), med(p99, b), med(p99, g), med(p99, w), med(cpu, g), med(cpu, w), med(rss, g)
    }
  }' "$CSV"
if [ -s "$SYNC" ]; then
  echo
  echo "Defguard full sync (S10 + S11, paged at 500), median seconds per sync:"
  awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } s[$1, ++n[$1]] = v["secs"]; e[$1] = v["users"] "+" v["groups"] }
    function med(t,    i, j, x, m, tmp) { m = n[t]; for (i = 1; i <= m; i++) x[i] = s[t, i] + 0; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] < x[i]) { tmp = x[i]; x[i] = x[j]; x[j] = tmp } return x[int((m + 1) / 2)] }
    END { for (t in n) printf "- %s: %.2f s (%s users+groups)\n", t, med(t), e[t] }' "$SYNC" | sort
fi
