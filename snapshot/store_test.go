package snapshot

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// TestChunkBytesColumn: tables of an earlier version gain observer_snapshots.chunk_bytes
// (0 on their rows); a snapshot without a byte bound takes the one it is first started
// with and keeps it; and a role that does not own the tables, which may not ALTER
// them, migrates without error once the column is there.
func TestChunkBytesColumn(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
	cps := checkpoint.NewStore(pool, "public", "s", "test")
	must(t, cps.Migrate(ctx))
	epoch, err := cps.AcquireEpoch(ctx)
	must(t, err)
	s := &store{pool: pool, schema: "public", slot: "s", listener: "test", epoch: func() int64 { return epoch }}
	must(t, s.migrate(ctx))
	// The tables as an earlier version left them, with a snapshot in progress.
	db.Exec(`ALTER TABLE observer_snapshots DROP COLUMN chunk_bytes;
	INSERT INTO observer_snapshots (slot_name, schema_name, table_name, origin, state, chunk_size) VALUES ('s', 'public', 't', 'command', 'running', 100)`)
	must(t, s.migrate(ctx))
	if got := pgtest.QueryValue[int64](db, `SELECT chunk_bytes FROM observer_snapshots`); got != 0 {
		t.Fatalf("unexpected chunk_bytes of an earlier version's snapshot; got %d; want 0", got)
	}
	id := pgtest.QueryValue[int64](db, `SELECT id FROM observer_snapshots`)
	start := func(current, want int64) {
		t.Helper()
		got, ok, err := s.start(ctx, id, 1, current)
		if err != nil || !ok || got != want {
			t.Fatalf("unexpected start with the bound %d; got %d, %v, %v; want %d, true, nil", current, got, ok, err, want)
		}
	}
	start(1<<20, 1<<20) // not recorded: the current bound, recorded
	start(2<<20, 1<<20) // recorded: kept

	role := "snapmig_" + strings.ToLower(strings.ReplaceAll(db.Name, "-", "_"))
	db.Exec(fmt.Sprintf(`CREATE ROLE %[1]s LOGIN;
	GRANT SELECT, INSERT, UPDATE, DELETE ON observer_snapshots, observer_snapshot_chunks, observer_epochs TO %[1]s;
	GRANT USAGE ON SEQUENCE observer_snapshots_id_seq TO %[1]s`, role))
	t.Cleanup(func() { db.Exec(`DROP OWNED BY ` + role + `; DROP ROLE ` + role) })
	limited := pgtest.Pool(t, fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", role, db.Server.Port, db.Name))
	ls := &store{pool: limited, schema: "public", slot: "s", listener: "test", epoch: func() int64 { return epoch }}
	if err := ls.migrate(ctx); err != nil {
		t.Fatalf("unexpected error migrating as a role that does not own the tables: %v", err)
	}
	if _, err := limited.Exec(ctx, `ALTER TABLE observer_snapshots ADD COLUMN IF NOT EXISTS chunk_bytes bigint`); err == nil {
		t.Fatalf("the role may ALTER the tables: the test proves nothing")
	}
}
