#!/usr/bin/env bash
# make demo: runs fraiseql-observers end to end on a throwaway local PostgreSQL.
# Needs the PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) and psql.
# Everything lives in a temporary directory that is removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin/fraiseql-observers"
[ -x "$bin" ] || { echo "demo: build the binary first (make build)"; exit 1; }

pgbin=$(pg_config --bindir 2>/dev/null || true)
for d in "$pgbin" /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -r); do
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then pgbin=$d; break; fi
done
[ -x "$pgbin/initdb" ] || { echo "demo: PostgreSQL server binaries not found (install postgresql-15)"; exit 1; }

work=$(mktemp -d /tmp/fodemo.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$work"

port=55432
while (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done

svc_pid=""
cleanup() {
  [ -n "$svc_pid" ] && kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null || true
  as_pg "$pgbin/pg_ctl" stop -D "$work/data" -m fast >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting a throwaway PostgreSQL on 127.0.0.1:$port (wal_level=logical)"
as_pg "$pgbin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$pgbin/pg_ctl" start -w -D "$work/data" -l "$work/postgres.log" \
  -o "-p $port -k $work -c wal_level=logical -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
export DEMO_DSN="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
export DEMO_OUT="$work/events.jsonl"
sql() { psql -X -q -v ON_ERROR_STOP=1 "$DEMO_DSN" "$@"; }

step "creating the sample schema and its publication"
sql <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL,
                     total numeric(12,2) NOT NULL, details jsonb, updated_at timestamptz DEFAULT now());
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL);
CREATE PUBLICATION fraiseql_observers FOR TABLE orders, customers;
SQL
echo "tables orders (REPLICA IDENTITY FULL) and customers; publication fraiseql_observers"

step "starting fraiseql-observers with configs/examples/demo.yaml"
"$bin" --version
"$bin" start --config "$root/configs/examples/demo.yaml" --log-format console >"$work/service.log" 2>&1 &
svc_pid=$!
for _ in $(seq 1 100); do
  active=$(sql -At -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'fraiseql_observers'" 2>/dev/null || true)
  [ "$active" = t ] && break
  if ! kill -0 "$svc_pid" 2>/dev/null; then echo "demo: the service exited:"; cat "$work/service.log"; exit 1; fi
  sleep 0.1
done
[ "$active" = t ] || { echo "demo: the service did not start streaming:"; cat "$work/service.log"; exit 1; }
echo "streaming from slot fraiseql_observers"

step "making changes"
sql -e <<'SQL'
INSERT INTO customers VALUES (1, 'ada@example.com');
INSERT INTO orders (id, customer, status, total, details) VALUES
  (100, 'ada', 'pending', 250.00, '{"items": 3, "gift": false}'),
  (101, 'ada', 'pending', 99.90, '{"items": 1}');
UPDATE orders SET status = 'shipped' WHERE id = 100;
BEGIN;
UPDATE customers SET email = 'ada@lovelace.example' WHERE id = 1;
DELETE FROM orders WHERE id = 101;
COMMIT;
SQL

want=6
for _ in $(seq 1 100); do
  got=$( [ -f "$DEMO_OUT" ] && wc -l <"$DEMO_OUT" || echo 0)
  [ "$got" -ge "$want" ] && break
  sleep 0.1
done

step "stopping the service (SIGTERM: drain, checkpoint, confirm)"
kill -TERM "$svc_pid"; wait "$svc_pid" || true; svc_pid=""
tail -n 5 "$work/service.log"

step "events delivered to $DEMO_OUT"
# One event per line, exactly as delivered (a pretty-printer would round numeric values).
cat "$DEMO_OUT"

step "checkpoints (SELECT * FROM observer_checkpoints ORDER BY created_at DESC)"
sql -c "SELECT action, commit_lsn, ordinal, created_at FROM observer_checkpoints ORDER BY created_at DESC"
sql -c "SELECT slot_name, confirmed_flush_lsn FROM pg_replication_slots"

got=$(wc -l <"$DEMO_OUT")
if [ "$got" -ne "$want" ]; then echo "demo: expected $want events, got $got"; exit 1; fi
step "done: $got events, nothing left behind"
