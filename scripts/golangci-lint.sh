#!/usr/bin/env bash
# Prints the path of a golangci-lint 2.x binary for `make lint`, installing the pinned
# version into ./bin when none is found. Looks, in order, at $GOLANGCI_LINT,
# ./bin/golangci-lint, golangci-lint on PATH and $(go env GOPATH)/bin/golangci-lint.
# Exits non-zero, saying why, when it can neither find nor install one.
set -euo pipefail
cd "$(dirname "$0")/.."
go=${GO:-go}
version=${GOLANGCI_LINT_VERSION:-v2.15.0}

is_v2() { [ -x "$1" ] && "$1" version 2>/dev/null | grep -q 'version v\?2\.'; }

candidates=()
[ -n "${GOLANGCI_LINT:-}" ] && candidates+=("$GOLANGCI_LINT")
candidates+=("$PWD/bin/golangci-lint")
if p=$(command -v golangci-lint 2>/dev/null); then candidates+=("$p"); fi
if gopath=$("$go" env GOPATH 2>/dev/null) && [ -n "$gopath" ]; then
  candidates+=("${gopath%%:*}/bin/golangci-lint")
fi
for c in "${candidates[@]}"; do
  if is_v2 "$c"; then echo "$c"; exit 0; fi
  if [ -n "${GOLANGCI_LINT:-}" ] && [ "$c" = "$GOLANGCI_LINT" ]; then
    echo "lint: GOLANGCI_LINT=$c is not an executable golangci-lint 2.x" >&2
    exit 1
  fi
done

echo "lint: golangci-lint 2.x not found; installing $version into ./bin" >&2
if ! GOBIN="$PWD/bin" "$go" install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version" >&2; then
  echo "lint: cannot install golangci-lint $version (go install failed); install it and put it on PATH, or set GOLANGCI_LINT=/path/to/golangci-lint" >&2
  exit 1
fi
if ! is_v2 "$PWD/bin/golangci-lint"; then
  echo "lint: ./bin/golangci-lint was installed but does not report a 2.x version" >&2
  exit 1
fi
echo "$PWD/bin/golangci-lint"
