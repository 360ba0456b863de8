package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestLeastPrivilege is reliability test S2 as the deployment guide sets it up: the
// service's role has LOGIN REPLICATION and owns only the schema of its own tables;
// an administrator owns the published table and the publication. validate-config
// --detailed passes, the service creates its slot and tables, streams, writes
// checkpoints, DLQ items and heartbeats, and status and dlq work as that role.
func TestLeastPrivilege(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v text);
	         CREATE PUBLICATION obs_pub FOR TABLE t;
	         CREATE ROLE observer LOGIN REPLICATION;
	         CREATE SCHEMA observer_state AUTHORIZATION observer`)
	t.Cleanup(func() { db.Exec(`DROP SCHEMA observer_state CASCADE; DROP ROLE observer`) })
	dsn := fmt.Sprintf("postgres://observer@127.0.0.1:%d/%s?sslmode=disable", db.Server.Port, db.Name)
	dir := t.TempDir()
	out := filepath.Join(dir, "events.jsonl")
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
	t.Cleanup(rejecting.Close)
	addr := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s, heartbeat_interval: 200ms}
state: {schema: observer_state}
checkpoints: {enabled: true, interval: 200ms}
admin: {listen: %q}
observers:
  all:
    entity: t
    actions: [{type: file, name: out, path: %q}]
  broken:
    entity: t
    event_type: INSERT
    condition: "new.id == 3"
    retry: {max_attempts: 1}
    on_failure: dlq
    actions: [{type: webhook, name: hook, url: %q, allow_private_networks: true}]
`, dsn, addr, out, rejecting.URL))

	r := expectCLI(t, nil, 0, []string{"role observer has REPLICATION"}, "validate-config", cfg, "--detailed")
	if strings.Contains(r.stdout, "FAIL") || strings.Contains(r.stdout, "WARN") {
		t.Fatalf("validate-config --detailed is not clean for the least-privileged role:\n%s", r.stdout)
	}
	p := startAndWait(t, cfg, addr)
	db.Exec(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g`)
	waitFor(t, 30*time.Second, "10 events", func() bool { return len(readEvents(t, out)) == 10 })
	waitFor(t, 30*time.Second, "the DLQ item", func() bool {
		return pgtest.QueryValue[int64](db, `SELECT count(*) FROM observer_state.observer_dlq`) == 1
	})
	waitFor(t, 30*time.Second, "a heartbeat", func() bool { return scrape(t, addr, "")["observer_heartbeats_received_total"] > 0 })
	waitFor(t, 30*time.Second, "the checkpoints", func() bool {
		return pgtest.QueryValue[int64](db, `SELECT count(*) FROM observer_state.observer_checkpoints WHERE action = 'all.out'`) == 1
	})
	expectCLI(t, nil, 0, []string{"Leader: listener-1 (1/1 healthy)", "DLQ: 1 pending items"}, "status", "--config", cfg)
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	expectCLI(t, nil, 0, []string{"showing state from PostgreSQL", "DLQ: 1 pending items"}, "status", "--config", cfg)
	expectCLI(t, nil, 0, []string{"broken.hook"}, "dlq", "list", "--config", cfg)
	if strings.Contains(p.output(), "permission denied") {
		t.Fatalf("the service met a permission error:\n%s", p.output())
	}
	if owner := pgtest.QueryValue[string](db, `SELECT tableowner FROM pg_tables WHERE schemaname = 'observer_state' AND tablename = 'observer_dlq'`); owner != "observer" {
		t.Fatalf("unexpected owner of observer_dlq %q", owner)
	}
}
