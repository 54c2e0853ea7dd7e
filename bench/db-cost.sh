#!/usr/bin/env bash
# The database cost of one W1 run on PostgreSQL: statements, transactions, rows and WAL bytes,
# measured around one flowd-bench run (docs/scaling.md, "What one run costs the database").
#
#   bench/db-cost.sh [EVENTS] [NODES]        (defaults: 5000 events, 1 node)
#
# Needs a quiet PostgreSQL on 127.0.0.1:5432 reachable as `postgres` without a password, whose
# server log is /var/log/postgresql/postgresql-15-main.log (Debian's), and a release build
# (`cargo build --release -p flowd -p flowd-bench`). Statements are counted from the server
# log: `log_statement = 'all'` is set for the role `postgres` during the run and reset after.
set -euo pipefail

events=${1:-5000}
nodes=${2:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/target/release/flowd-bench"
flowd="$here/target/release/flowd"
log=/var/log/postgresql/postgresql-15-main.log
psql_=(psql -h 127.0.0.1 -U postgres -d postgres -Atq)

[[ -x $bench && -x $flowd ]] || { echo "build first: cargo build --release -p flowd -p flowd-bench" >&2; exit 2; }
[[ -r $log ]] || { echo "cannot read the server log $log" >&2; exit 2; }

"${psql_[@]}" -c "ALTER ROLE postgres SET log_statement = 'all'"
trap '"${psql_[@]}" -c "ALTER ROLE postgres RESET log_statement"' EXIT
log_from=$(wc -l < "$log")
wal_from=$("${psql_[@]}" -c "SELECT pg_current_wal_lsn()")

# pg_stat_database forgets a database when it is dropped, and a backend's CPU time goes with its
# process: sample both until then. CPU: clock ticks per postgres process, the last seen.
stats=$(mktemp)
ticks=$(mktemp)
pg_ticks() {
  for stat in /proc/[0-9]*/stat; do
    { read -r line < "$stat"; } 2>/dev/null || continue
    [[ $line == *"(postgres)"* ]] || continue
    set -- ${line##*) }
    echo "${stat//[^0-9]/} $(( ${12} + ${13} ))"
  done
}
pg_ticks > "$ticks.start"
(
  while true; do
    pg_ticks >> "$ticks"
    "${psql_[@]}" -F ' ' -c "SELECT datname, xact_commit, tup_inserted, tup_updated, tup_deleted,
        pg_database_size(datname) FROM pg_stat_database WHERE datname LIKE 'flowd_bench_%'" \
      > "$stats.new" 2>/dev/null && [[ -s $stats.new ]] && mv "$stats.new" "$stats"
    sleep 0.2
  done
) &
sampler=$!

"$bench" --no-build --flowd "$flowd" --database-url postgres://postgres@127.0.0.1:5432 \
  --count "$events" --nodes "$nodes" | grep -E "completed|CPU|check"
kill "$sampler"; wait "$sampler" 2>/dev/null || true

wal_to=$("${psql_[@]}" -c "SELECT pg_current_wal_lsn()")
pg_ticks >> "$ticks"
# Per process: the last count seen, less the count at the start for processes already there.
cpu_ticks=$(awk 'NR == FNR { start[$1] = $2; next } { last[$1] = $2 }
  END { for (p in last) s += last[p] - start[p]; print s }' "$ticks.start" "$ticks")
cpu_seconds=$(awk -v t="$cpu_ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')
wal_bytes=$("${psql_[@]}" -c "SELECT pg_wal_lsn_diff('$wal_to', '$wal_from')::bigint")
read -r db commits inserted updated deleted size < "$stats"
# Statements flowd sent to its database: each BEGIN, COMMIT and parameterised execution is one
# line; the harness's own psql statements name no flowd_bench database.
statements=$(tail -n +"$((log_from + 1))" "$log" | grep -c "@$db LOG:  \(statement\|execute\)" || true)

per() { awk -v a="$1" -v n="$events" 'BEGIN { printf "%.2f", a / n }'; }
echo "database $db, $events runs"
echo "  statements   $statements   ($(per "$statements") per run)"
echo "  transactions $commits   ($(per "$commits") per run, committed)"
echo "  rows         $inserted inserted, $updated updated, $deleted deleted   ($(per "$inserted") / $(per "$updated") / $(per "$deleted") per run)"
echo "  WAL          $wal_bytes bytes   ($(per "$wal_bytes") per run; the whole server)"
echo "  size         $size bytes at the end   ($(per "$size") per run)"
echo "  CPU          $cpu_seconds s in PostgreSQL's processes   ($(awk -v s="$cpu_seconds" -v n="$events" 'BEGIN { printf "%.3f", s * 1000 / n }') ms per run)"
