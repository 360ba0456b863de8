#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each (default 20s), or
# only the targets whose name matches the regular expression $2 (FUZZ in make), e.g.
# `make fuzz FUZZ=FuzzBudget FUZZTIME=5m` for the evaluation budgets (eval/fuzzbudget_test.go).
# A crasher is written by `go test` under the package's testdata/fuzz/<Target>/;
# commit it together with its fix.
set -euo pipefail
fuzztime=${1:-20s}
only=${2:-.}
cd "$(dirname "$0")/.."
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func \(Fuzz[A-Za-z0-9_]*\)' "$dir"/*_test.go 2>/dev/null | awk '{print $2}' | sort -u); do
    if ! [[ $target =~ $only ]]; then
      continue
    fi
    echo "== $pkg $target ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"; then
      status=1
    fi
  done
done
exit $status
