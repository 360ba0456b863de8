package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestPhysicalFailover is reliability test R13 on PostgreSQL 15, which has no
// failover slots: the primary dies after changes the service never received, and a
// streaming standby is promoted. The new primary has our checkpoints (they are
// ordinary rows, replicated) but not the slot, so those changes cannot be streamed
// any more. Pointed at it, the service stops with the gap exit code and says so; it
// does not create a new slot there (manage_slot is on), which would silently skip
// them.
func TestPhysicalFailover(t *testing.T) {
	primary, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Remove() })
	db := pgtest.NewDBOn(t, primary)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	standby, err := primary.StartStandby()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Remove() })

	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, baseConfig(db, out, ""))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(1, 100) g`)
	waitFor(t, 30*time.Second, "100 events", func() bool { return len(readEvents(t, out)) == 100 })
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(101, 150) g`) // never streamed

	// The standby replays everything, then the primary dies and the standby takes over.
	end := pgtest.QueryValue[string](db, `SELECT pg_current_wal_lsn()::text`)
	onStandby := &pgtest.DB{Server: standby, Name: db.Name}
	waitFor(t, 30*time.Second, "the standby to replay "+end, func() bool {
		return queryDSN[bool](t, standby.DSN(db.Name), fmt.Sprintf(`SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn`, end))
	})
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	if n := queryDSN[int64](t, standby.DSN(db.Name), `SELECT count(*) FROM t`); n != 150 {
		t.Fatalf("unexpected rows on the promoted standby; got %d; want 150", n)
	}

	cfg = writeConfig(t, baseConfig(onStandby, out, ""))
	expectExit(t, exitGap, `slot no longer exists but our checkpoint is at`, "start", "--config", cfg)
	if n := queryDSN[int64](t, standby.DSN(db.Name), `SELECT count(*) FROM pg_replication_slots`); n != 0 {
		t.Fatalf("the service created a slot on the new primary; want none")
	}
}
