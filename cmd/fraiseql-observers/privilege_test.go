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
	db, cfg, addr, out := restrictedService(t, "observer", "new.id == 3")

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
	// Health is judged by heartbeat age, which a loaded machine can stretch for a moment.
	waitFor(t, 30*time.Second, "status to show the healthy leader and the DLQ item", func() bool {
		r := cli(t, nil, "status", "--config", cfg)
		return r.code == 0 && strings.Contains(r.stdout, "Leader: listener-1 (1/1 healthy)") && strings.Contains(r.stdout, "DLQ: 1 pending item")
	})
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	expectCLI(t, nil, 0, []string{"showing state from PostgreSQL", "DLQ: 1 pending item"}, "status", "--config", cfg)
	expectCLI(t, nil, 0, []string{"broken.hook"}, "dlq", "list", "--config", cfg)
	if strings.Contains(p.output(), "permission denied") {
		t.Fatalf("the service met a permission error:\n%s", p.output())
	}
	if owner := pgtest.QueryValue[string](db, `SELECT tableowner FROM pg_tables WHERE schemaname = 'observer_state' AND tablename = 'observer_dlq'`); owner != "observer" {
		t.Fatalf("unexpected owner of observer_dlq %q", owner)
	}
}

// TestDLQWriteFailureHoldsTheSlot: an event whose action failed for good cannot be
// parked because the role lost INSERT on observer_dlq. It is neither delivered nor
// parked, so the slot never confirms its transaction while the DLQ write keeps being
// retried (and counted); once the privilege is back the letter is stored and the
// slot moves on. Other rows are not held back.
func TestDLQWriteFailureHoldsTheSlot(t *testing.T) {
	db, cfg, addr, out := restrictedService(t, "observer_dlq_test", "new.v == 'reject'")
	p := startAndWait(t, cfg, addr)
	db.Exec(`REVOKE INSERT ON observer_state.observer_dlq FROM observer_dlq_test`)

	db.Exec(`INSERT INTO t VALUES (1, 'reject')`)
	db.Exec(`INSERT INTO t SELECT g, 'fine' FROM generate_series(2, 50) g`)
	waitFor(t, 30*time.Second, "50 events in the file", func() bool { return len(readEvents(t, out)) == 50 })
	held := mustLSN(t, eventOfRow(t, out, 1).CommitLSN)
	waitFor(t, 30*time.Second, "failed DLQ writes", func() bool {
		return scrape(t, addr, "")[`observer_dlq_write_errors_total{action_type="webhook"}`] >= 2
	})
	for range 10 { // several status intervals
		confirmed := mustLSN(t, pgtest.QueryValue[string](db, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'obs_slot'`))
		if confirmed >= held {
			t.Fatalf("the slot confirmed %s, past the unparked event's commit %s", confirmed, held)
		}
		time.Sleep(200 * time.Millisecond)
	}

	db.Exec(`GRANT INSERT ON observer_state.observer_dlq TO observer_dlq_test`)
	waitFor(t, 60*time.Second, "the letter", func() bool {
		return pgtest.QueryValue[int64](db, `SELECT count(*) FROM observer_state.observer_dlq`) == 1
	})
	waitFor(t, 30*time.Second, "the slot to confirm past the event", func() bool {
		return mustLSN(t, pgtest.QueryValue[string](db, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'obs_slot'`)) > held
	})
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
}

// eventOfRow returns the file sink's event of the row with integer id.
func eventOfRow(t *testing.T, path string, id int) fileEvent {
	t.Helper()
	for _, ev := range readEvents(t, path) {
		if string(ev.New["id"]) == fmt.Sprint(id) {
			return ev
		}
	}
	t.Fatalf("no event of row %d in %s", id, path)
	return fileEvent{}
}

// restrictedService prepares a database where role has only LOGIN REPLICATION and
// owns the schema observer_state, and a configuration running as that role: a file
// action (out) for every row of table t, and for the rows matching condition an
// action that always fails (a webhook answering 400), parked in the DLQ.
func restrictedService(t *testing.T, role, condition string) (db *pgtest.DB, cfg, addr, out string) {
	t.Helper()
	db = pgtest.NewDB(t)
	db.Exec(fmt.Sprintf(`CREATE TABLE t (id int PRIMARY KEY, v text);
	         CREATE PUBLICATION obs_pub FOR TABLE t;
	         CREATE ROLE %[1]s LOGIN REPLICATION;
	         CREATE SCHEMA observer_state AUTHORIZATION %[1]s`, role))
	t.Cleanup(func() { db.Exec(`DROP SCHEMA observer_state CASCADE; DROP ROLE ` + role) })
	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", role, db.Server.Port, db.Name)
	out = filepath.Join(t.TempDir(), "events.jsonl")
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
	t.Cleanup(rejecting.Close)
	addr = freeAddr(t)
	cfg = writeConfig(t, fmt.Sprintf(`
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
    condition: %q
    retry: {max_attempts: 1}
    on_failure: dlq
    actions: [{type: webhook, name: hook, url: %q, allow_private_networks: true}]
`, dsn, addr, out, condition, rejecting.URL))
	return db, cfg, addr, out
}
