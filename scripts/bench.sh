#!/usr/bin/env bash
# make bench: every benchmark of the project, written to bench-results/<date>.md and
# stdout. Figures are for docs/performance.md; nothing here asserts a time.
#   BENCH_ROWS        rows per end-to-end backlog, of the snapshot table, and of the snapshot
#                     correctness test (default 1000000)
#   BENCH_BIG_ROWS    rows of the large (memory) backlog (default 10000000, about 4.6 GB of
#                     WAL and as much table; 0 skips it)
#   BENCH_CATCHUP_ROUNDS  rounds of the catch-up and one-transaction scenarios, each
#                     running pg_recvlogical, the plain reader and the service once, in a
#                     rotated order; medians are shown (default 3)
#   BENCH_CATCHUP_VARIANT  variables (e.g. GOMAXPROCS=1) for a fourth catch-up consumer:
#                     the service with them set, against the defaults in the same rounds
#   BENCH_LIVE_RATES  write rates of the live webhook scenario (default 1000,2500,4000)
#   BENCH_TRANSPORT_EVENTS  single-row transactions of the transport scenario: webhook
#                     delivery in-process and through NATS with 1, 2 and 3 executors
#                     (default 50000; 0 skips it)
#   BENCH_IDLE        how long the idle scenario watches the service (default 1m)
#   SINK_BENCH_EVENTS events per sink benchmark (default 200000)
#   BENCHTIME         go test -benchtime for micro-benchmarks (default 1s)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-results
out="bench-results/$(date -u +%Y-%m-%dT%H%M%SZ).md"
rows=${BENCH_ROWS:-1000000}
big_rows=${BENCH_BIG_ROWS:-10000000}
rounds=${BENCH_CATCHUP_ROUNDS:-3}
live_rates=${BENCH_LIVE_RATES:-1000,2500,4000}
transport_events=${BENCH_TRANSPORT_EVENTS:-50000}
idle=${BENCH_IDLE:-1m}
export SINK_BENCH_EVENTS=${SINK_BENCH_EVENTS:-200000}
benchtime=${BENCHTIME:-1s}
{
  echo "# make bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(go version | awk '{print $3}')"
  echo
  echo "## Micro-benchmarks (go test -bench)"
  echo
  echo '```'
  go test -run '^$' -bench . -benchmem -benchtime "$benchtime" ./lsn ./decoder ./eval ./pipeline 2>&1 | grep -E '^(Benchmark|ok|PASS|FAIL|goos|cpu)' || true
  echo '```'
  echo
  sink_pkgs=$(go list ./sinks/... | while read -r p; do
    d=$(go list -f '{{.Dir}}' "$p"); grep -lq '^func Benchmark' "$d"/*_test.go 2>/dev/null && echo "$p"; done || true)
  if [ -n "$sink_pkgs" ]; then
    echo "## Sinks ($SINK_BENCH_EVENTS events each, against local servers)"
    echo
    echo '```'
    # shellcheck disable=SC2086
    go test -run '^$' -bench . -benchtime 1x -timeout 60m $sink_pkgs 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' || true
    echo '```'
    echo
  fi
  go run ./internal/benchrun -bin bin/fraiseql-observers -rows "$rows" -catchup-rounds "$rounds" -big-rows "$big_rows" -live-rates "$live_rates" -transport-events "$transport_events" -idle "$idle"
  echo "## Snapshot correctness at $rows rows (TestSnapshotWhileWriting)"
  echo
  echo "Backfill while concurrent writers update, delete and insert rows; checked against the table and an oracle slot."
  echo
  echo '```'
  SNAPSHOT_TEST_ROWS="$rows" go test -count=1 -timeout 60m -run '^TestSnapshotWhileWriting$' -v ./snapshot 2>&1 | grep -E '^(---|ok|FAIL|PASS)|snapshot_test.go' || true
  echo '```'
} | tee "$out"
echo "written to $out"
