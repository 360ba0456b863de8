package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

func minimalConfig(dsn, extraSource string) string {
	return fmt.Sprintf(`
source:
  dsn: %q
  slot: obs_slot
  publication: obs_pub
%s
admin: {listen: ""}
observers:
  all:
    entity: "*"
    actions: [{type: stdout}]
`, dsn, extraSource)
}

// expectExit runs the service and checks its exit code and that its output matches.
func expectExit(t *testing.T, code int, pattern string, args ...string) string {
	t.Helper()
	p := startService(t, nil, args...)
	got := p.wait(60 * time.Second)
	out := p.output()
	if got != code {
		t.Fatalf("unexpected exit code; got %d; want %d\n%s", got, code, out)
	}
	if !regexp.MustCompile(pattern).MatchString(out) {
		t.Fatalf("output does not match %q:\n%s", pattern, out)
	}
	return out
}

func TestPreflightFailures(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE nokey (v int)`)

	t.Run("publication missing", func(t *testing.T) {
		cfg := writeConfig(t, minimalConfig(db.DSN(), "  manage_slot: true"))
		expectExit(t, exitPrefight, `publication \\?"obs_pub\\?" does not exist.*CREATE PUBLICATION`, "start", "--config", cfg)
	})
	db.Exec(`CREATE PUBLICATION obs_pub FOR TABLE t, nokey`)
	t.Run("slot missing", func(t *testing.T) {
		cfg := writeConfig(t, minimalConfig(db.DSN(), ""))
		expectExit(t, exitPrefight, `replication slot \\?"obs_slot\\?" does not exist.*pg_create_logical_replication_slot`, "start", "--config", cfg)
	})
	db.CreateSlot("obs_slot")
	t.Run("slot active elsewhere", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgconn.Connect(ctx, db.DSN()+"&replication=database")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		err = pglogrepl.StartReplication(ctx, conn, "obs_slot", 0, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names 'obs_pub'"}})
		if err != nil {
			t.Fatal(err)
		}
		cfg := writeConfig(t, minimalConfig(db.DSN(), ""))
		expectExit(t, exitPrefight, `active for PID [0-9]+`, "start", "--config", cfg)
	})
	t.Run("role without REPLICATION", func(t *testing.T) {
		db.Exec(`CREATE ROLE plain LOGIN`)
		dsn := strings.Replace(db.DSN(), "postgres://postgres@", "postgres://plain@", 1)
		cfg := writeConfig(t, minimalConfig(dsn, ""))
		expectExit(t, exitPrefight, `lacks the REPLICATION attribute.*ALTER ROLE`, "start", "--config", cfg)
	})
	t.Run("slot of another plugin", func(t *testing.T) {
		db.Exec(`SELECT pg_create_logical_replication_slot('td_slot', 'test_decoding')`)
		cfg := writeConfig(t, strings.Replace(minimalConfig(db.DSN(), ""), "slot: obs_slot", "slot: td_slot", 1))
		expectExit(t, exitPrefight, `slot \\?"td_slot\\?" uses output plugin \\?"test_decoding\\?", not pgoutput`, "start", "--config", cfg)
	})
	t.Run("physical slot", func(t *testing.T) {
		db.Exec(`SELECT pg_create_physical_replication_slot('phys_slot')`)
		t.Cleanup(func() { db.Exec(`SELECT pg_drop_replication_slot('phys_slot')`) })
		cfg := writeConfig(t, strings.Replace(minimalConfig(db.DSN(), ""), "slot: obs_slot", "slot: phys_slot", 1))
		expectExit(t, exitPrefight, `slot \\?"phys_slot\\?" is a physical slot, not a logical one`, "start", "--config", cfg)
	})
	t.Run("slot of another database", func(t *testing.T) {
		other := pgtest.NewDB(t)
		other.CreateSlot("elsewhere_slot")
		cfg := writeConfig(t, strings.Replace(minimalConfig(db.DSN(), ""), "slot: obs_slot", "slot: elsewhere_slot", 1))
		expectExit(t, exitPrefight, `slot \\?"elsewhere_slot\\?" belongs to database \\?"`+other.Name, "start", "--config", cfg)
	})
	t.Run("table without usable replica identity warns", func(t *testing.T) {
		cfg := writeConfig(t, minimalConfig(db.DSN(), ""))
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the replica identity warning", func() bool {
			return strings.Contains(p.output(), "nokey has no usable replica identity")
		})
		if p.exited() {
			t.Fatalf("a replica identity warning stopped the service:\n%s", p.output())
		}
		p.stop()
	})
	t.Run("malformed config", func(t *testing.T) {
		cfg := writeConfig(t, minimalConfig(db.DSN(), "  retires: 3"))
		expectExit(t, exitConfig, regexp.QuoteMeta(cfg)+`:6:3: .*retires`, "start", "--config", cfg)
	})
}

func TestWalLevelNotLogical(t *testing.T) {
	srv, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Remove()
	cfg := writeConfig(t, minimalConfig(srv.DSN("postgres"), "  manage_slot: true"))
	expectExit(t, exitPrefight, `wal_level is \\?"replica\\?".*ALTER SYSTEM SET wal_level = logical`, "start", "--config", cfg)
}

// TestGapDetection: the slot moved past our checkpoint, the slot was dropped, or the
// server is another cluster: the service refuses to start, with exit code 4.
func TestGapDetection(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, baseConfig(db, out, ""))
	run := func() {
		p := startService(t, nil, "start", "--config", cfg)
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		db.Exec(`INSERT INTO t VALUES (1)`)
		waitFor(t, 30*time.Second, "the event", func() bool { return len(readEvents(t, out)) > 0 })
		time.Sleep(500 * time.Millisecond) // a checkpoint write
		if code := p.stop(); code != 0 {
			t.Fatalf("unexpected exit code %d", code)
		}
	}
	run()
	t.Run("slot advanced past the checkpoint", func(t *testing.T) {
		db.Exec(`INSERT INTO t VALUES (2)`)
		db.Exec(`SELECT pg_replication_slot_advance('obs_slot', pg_current_wal_lsn())`)
		expectExit(t, exitGap, `confirmed_flush_lsn .* is ahead of our checkpoint`, "start", "--config", cfg)
	})
	t.Run("system identifier changed", func(t *testing.T) {
		db.Exec(`UPDATE observer_checkpoints SET commit_lsn = (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'obs_slot'),
		         system_id = '1234' WHERE action = '*'`)
		expectExit(t, exitGap, `system identifier .* different cluster`, "start", "--config", cfg)
	})
	t.Run("slot dropped", func(t *testing.T) {
		db.Exec(`SELECT pg_drop_replication_slot('obs_slot')`)
		expectExit(t, exitGap, `slot no longer exists`, "start", "--config", cfg)
	})
}
