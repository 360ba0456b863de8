package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestRowCacheMakesFieldChangedWork: under REPLICA IDENTITY DEFAULT, field_changed
// works from the row cache for rows seen before, is an error (not false) for rows never
// seen, and unchanged TOAST columns are filled.
func TestRowCacheMakesFieldChangedWork(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, doc text);
	         ALTER TABLE orders ALTER COLUMN doc SET STORAGE EXTERNAL;
	         CREATE PUBLICATION obs_pub FOR TABLE orders;
	         INSERT INTO orders VALUES (1, 'new', 'before the service started')`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
checkpoints: {interval: 200ms}
admin: {listen: ""}
observers:
  status_changes:
    entity: orders
    event_type: UPDATE
    condition: "field_changed('status')"
    actions: [{type: file, path: %q}]
`, db.DSN(), out))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	// A big, incompressible TOAST value (md5 chains do not compress).
	db.Exec(`INSERT INTO orders SELECT 2, 'pending', string_agg(md5(g::text), '') FROM generate_series(1, 700) g`)
	db.Exec(`UPDATE orders SET status = 'paid' WHERE id = 1`)    // never seen: error, no event
	db.Exec(`UPDATE orders SET status = 'shipped' WHERE id = 2`) // seen (insert): fires, doc untouched
	db.Exec(`UPDATE orders SET status = 'delivered' WHERE id = 1`)
	db.Exec(`UPDATE orders SET doc = 'x' WHERE id = 2`) // status unchanged: false, no event
	waitFor(t, 30*time.Second, "two events", func() bool { return len(readEvents(t, out)) >= 2 })
	time.Sleep(time.Second)
	p.stop()
	evs := readEvents(t, out)
	if len(evs) != 2 {
		t.Fatalf("unexpected events: %d\n%v", len(evs), evs)
	}
	shipped, delivered := evs[0], evs[1]
	if string(shipped.New["status"]) != `"shipped"` || shipped.OldKind != "cached" || string(shipped.Old["status"]) != `"pending"` {
		t.Fatalf("unexpected first event: %s", shipped.raw)
	}
	doc := pgtest.QueryValue[string](db, `SELECT string_agg(md5(g::text), '') FROM generate_series(1, 700) g`)
	if string(shipped.New["doc"]) != `"`+doc+`"` || strings.Contains(shipped.raw, `"unavailable":["doc"]`) {
		t.Fatalf("unchanged TOAST column not filled from the cache: %.300s", shipped.raw)
	}
	if string(delivered.Old["status"]) != `"paid"` || delivered.OldKind != "cached" {
		t.Fatalf("second update of a row seen once did not get its old image: %s", delivered.raw)
	}
	if !strings.Contains(p.output(), "condition could not be evaluated") || !strings.Contains(p.output(), "cannot tell whether") {
		t.Fatalf("the update of a never-seen row was not reported as a condition error:\n%s", p.output())
	}
}

// TestCachingDisabled: with caching off, the same condition is an error for every
// UPDATE under REPLICA IDENTITY DEFAULT (the documented trade-off).
func TestCachingDisabled(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);
	         CREATE PUBLICATION obs_pub FOR TABLE orders`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
caching: {enabled: false}
admin: {listen: ""}
observers:
  status_changes:
    entity: orders
    event_type: [INSERT, UPDATE]
    condition: "event_type == 'INSERT' || field_changed('status')"
    actions: [{type: file, path: %q}]
`, db.DSN(), out))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO orders VALUES (1, 'a')`)
	db.Exec(`UPDATE orders SET status = 'b' WHERE id = 1`)
	waitFor(t, 30*time.Second, "the insert event", func() bool { return len(readEvents(t, out)) >= 1 })
	waitFor(t, 30*time.Second, "the condition error", func() bool { return strings.Contains(p.output(), "cannot tell whether") })
	p.stop()
	if evs := readEvents(t, out); len(evs) != 1 || evs[0].Op != "INSERT" {
		t.Fatalf("unexpected events with caching off: %v", evs)
	}
}
