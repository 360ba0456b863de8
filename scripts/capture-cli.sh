#!/usr/bin/env bash
# Regenerates docs/cli.md: runs every documented command against a throwaway PostgreSQL
# and a real service, and writes their output into the template
# cmd/fraiseql-observers/testdata/cli.md.tmpl. Needs the PostgreSQL server binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -run '^TestCLIDocs$' ./cmd/fraiseql-observers -update-cli-docs
echo "docs/cli.md rewritten"
