package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestPublicationMisuse is part of reliability test B3: PostgreSQL refuses to decode
// the slot's changes with the publication, either because the slot was created
// before the publication or because the publication was dropped while the service
// streamed. Reconnecting cannot cure either: the service stops with the preflight
// exit code, the server's error and what to do, instead of reconnecting in a loop.
func TestPublicationMisuse(t *testing.T) {
	t.Run("slot created before the publication", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(`CREATE TABLE t (id int PRIMARY KEY)`)
		db.CreateSlot("obs_slot")
		db.Exec(`INSERT INTO t VALUES (1)`)
		db.Exec(`CREATE PUBLICATION obs_pub FOR TABLE t`)
		cfg := writeConfig(t, baseConfig(db, filepath.Join(t.TempDir(), "events.jsonl"), ""))
		out := expectExit(t, exitPrefight, `slot \\?"obs_slot\\?" cannot be streamed with publication \\?"obs_pub\\?": the slot was created before the publication.*publication \\?"obs_pub\\?" does not exist.*hint: create the slot after the publication`,
			"start", "--config", cfg)
		if n := strings.Count(out, "reconnecting"); n > 0 {
			t.Fatalf("the service reconnected %d times before giving up; want none", n)
		}
	})

	t.Run("publication dropped while streaming", func(t *testing.T) {
		db := pgtest.NewDB(t)
		db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
		events := filepath.Join(t.TempDir(), "events.jsonl")
		p := startService(t, nil, "start", "--config", writeConfig(t, baseConfig(db, events, "")))
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		db.Exec(`INSERT INTO t VALUES (1)`)
		waitFor(t, 30*time.Second, "the first event", func() bool { return len(readEvents(t, events)) == 1 })
		db.Exec(`DROP PUBLICATION obs_pub`)
		db.Exec(`INSERT INTO t VALUES (2)`)
		if code := p.wait(30 * time.Second); code != exitPrefight {
			t.Fatalf("unexpected exit code %d; want %d\n%s", code, exitPrefight, p.output())
		}
		if out := p.output(); !strings.Contains(out, `publication \"obs_pub\" was dropped while the service streamed`) || !strings.Contains(out, "CREATE PUBLICATION") {
			t.Fatalf("the output does not explain the dropped publication:\n%s", out)
		}
	})
}
