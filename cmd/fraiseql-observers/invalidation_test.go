package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// invalidateSlot writes WAL into a table outside the publication and checkpoints
// until PostgreSQL invalidates the slot for max_slot_wal_keep_size.
func invalidateSlot(t *testing.T, db *pgtest.DB, slot string) {
	t.Helper()
	db.Exec(`CREATE TABLE IF NOT EXISTS filler (id int, payload text)`)
	for range 8 {
		db.Exec(`INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 8000) g`)
		db.Exec(`SELECT pg_switch_wal()`)
		db.Exec(`CHECKPOINT`)
		if pgtest.QueryValue[string](db, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, slot) == "lost" {
			return
		}
	}
	t.Fatalf("slot %s is not invalidated after writing WAL past max_slot_wal_keep_size", slot)
}

// TestSlotInvalidated is reliability test R9: PostgreSQL invalidates the slot because
// it retained more WAL than max_slot_wal_keep_size — while the service was stopped,
// and while it was running with its only action stuck. Either way the service stops
// with the gap exit code and says why; it never recreates the slot or starts from
// wherever the server could still send.
func TestSlotInvalidated(t *testing.T) {
	srv, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Remove() })

	t.Run("while stopped", func(t *testing.T) {
		db := pgtest.NewDBOn(t, srv)
		db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
		out := filepath.Join(t.TempDir(), "events.jsonl")
		cfg := writeConfig(t, baseConfig(db, out, ""))
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		db.Exec(`INSERT INTO t VALUES (1)`)
		waitFor(t, 30*time.Second, "the event", func() bool { return len(readEvents(t, out)) == 1 })
		if code := p.stop(); code != 0 {
			t.Fatalf("unexpected exit code %d", code)
		}
		db.Exec(`INSERT INTO t VALUES (2)`) // committed, never delivered
		invalidateSlot(t, db, "obs_slot")
		expectExit(t, exitGap, `slot was invalidated \(wal_status = lost\).*raise max_slot_wal_keep_size`, "start", "--config", cfg)
		if n := pgtest.QueryValue[int64](db, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'obs_slot' AND wal_status = 'lost'`); n != 1 {
			t.Fatalf("the invalidated slot was replaced or dropped; want it kept for the operator")
		}
	})

	t.Run("while streaming", func(t *testing.T) {
		db := pgtest.NewDBOn(t, srv)
		db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
		// A receiver that never answers: nothing is settled, so the slot keeps its
		// position while WAL piles up behind it.
		var requests atomic.Int64
		release := make(chan struct{})
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(func() { close(release); hook.Close() })
		addr := freeAddr(t)
		cfg := writeConfig(t, opsConfig(db, addr, "", "pipeline: {shutdown_timeout: 2s}", fmt.Sprintf(`  all:
    entity: t
    actions: [{type: webhook, url: %q, timeout: 10m, allow_private_networks: true}]
`, hook.URL)))
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		db.Exec(`INSERT INTO t VALUES (1)`)
		waitFor(t, 30*time.Second, "the webhook request", func() bool { return requests.Load() > 0 })
		waitFor(t, 30*time.Second, "wal_status reserved in the metrics", func() bool {
			return scrape(t, addr, "")[`observer_slot_wal_status{status="reserved"}`] == 1
		})

		// WAL past max_slot_wal_keep_size, no checkpoint yet: the slot no longer
		// reserves what it needs (unreserved), and the metrics say so before the
		// checkpoint that invalidates it.
		db.Exec(`CREATE TABLE filler (id int, payload text)`)
		db.Exec(`INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 8000) g`)
		db.Exec(`SELECT pg_switch_wal()`)
		if st := pgtest.QueryValue[string](db, `SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'obs_slot'`); st != "unreserved" {
			t.Fatalf("unexpected wal_status before the checkpoint; got %q; want unreserved", st)
		}
		waitFor(t, 30*time.Second, "wal_status unreserved in the metrics", func() bool {
			m := scrape(t, addr, "")
			return m[`observer_slot_wal_status{status="unreserved"}`] == 1 && m[`observer_slot_wal_status{status="reserved"}`] == 0 &&
				m["observer_slot_safe_wal_size_bytes"] <= 0
		})
		invalidateSlot(t, db, "obs_slot")
		if code := p.wait(60 * time.Second); code != exitGap {
			t.Fatalf("unexpected exit code; got %d; want %d (gap)\n%s", code, exitGap, p.output())
		}
		if !regexp.MustCompile(`slot was invalidated \(wal_status = lost\) while the service was reconnecting.*raise max_slot_wal_keep_size`).MatchString(p.output()) {
			t.Fatalf("the output does not name the invalidation:\n%s", p.output())
		}
	})
}
