package checkpoint

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

func TestSaveLoadMonotonicFenced(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
	a := NewStore(pool, "obs", "slot1", "listener-a")
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Migrate(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if e, err := a.AcquireEpoch(ctx); err != nil || e != 1 {
		t.Fatalf("unexpected first epoch %d, %v", e, err)
	}
	st := State{Slot: 0x2000, SystemID: "42", Actions: map[string]lsn.Position{"o.0": {Commit: 0x1F00, Ord: 3}, "o.1": {Commit: 0x2000, Ord: 9}}}
	if err := a.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, err := a.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Slot != st.Slot || got.SystemID != "42" || got.Actions["o.0"] != st.Actions["o.0"] || got.Actions["o.1"] != st.Actions["o.1"] {
		t.Fatalf("unexpected loaded state %+v", got)
	}
	// Never backwards: an older position is ignored.
	if err := a.Save(ctx, State{Slot: 0x1000, SystemID: "42", Actions: map[string]lsn.Position{"o.0": {Commit: 0x1F00, Ord: 2}}}); err != nil {
		t.Fatal(err)
	}
	got, _ = a.Load(ctx)
	if got.Slot != 0x2000 || got.Actions["o.0"] != (lsn.Position{Commit: 0x1F00, Ord: 3}) {
		t.Fatalf("a checkpoint moved backwards: %+v", got)
	}
	// Fenced: a newer process takes the slot; the old writer can no longer write.
	b := NewStore(pool, "obs", "slot1", "listener-b")
	if e, err := b.AcquireEpoch(ctx); err != nil || e != 2 {
		t.Fatalf("unexpected second epoch %d, %v", e, err)
	}
	if err := a.Save(ctx, State{Slot: 0x9000, SystemID: "42"}); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale writer not fenced; got %v", err)
	}
	if err := b.Save(ctx, State{Slot: 0x3000, SystemID: "42"}); err != nil {
		t.Fatal(err)
	}
	got, _ = b.Load(ctx)
	if got.Slot != 0x3000 {
		t.Fatalf("unexpected slot position %v", got.Slot)
	}
	// The seed's check: the newest row has a fresh created_at.
	age := pgtest.QueryValue[float64](db, `SELECT extract(epoch FROM now() - created_at) FROM obs.observer_checkpoints ORDER BY created_at DESC LIMIT 1`)
	if age > 60 {
		t.Fatalf("newest checkpoint is %.0fs old", age)
	}
}

func TestMigrateWithoutCreatePrivilege(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	admin := NewStore(pgtest.Pool(t, db.DSN()), "public", "s", "admin")
	if err := admin.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db.Exec(`CREATE ROLE cdc_stream LOGIN REPLICATION;
	         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
	         GRANT SELECT, INSERT, UPDATE ON observer_checkpoints, observer_epochs TO cdc_stream`)
	dsn := "postgres://cdc_stream@127.0.0.1:" + itoa(db.Server.Port) + "/" + db.Name + "?sslmode=disable"
	s := NewStore(pgtest.Pool(t, dsn), "public", "s", "stream")
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate with pre-created tables and no CREATE privilege: %v", err)
	}
	if _, err := s.AcquireEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, State{Slot: 10, SystemID: "1"}); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func newPoolDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return pgtest.Pool(t, pgtest.NewDB(t).DSN())
}

// TestMarkDisabled records that the slot is streamed without checkpoints: Load
// reports it, the epoch moves on (an earlier writer is fenced), and the next write of
// an instance with checkpoints enabled replaces the stale rows and clears the mark.
func TestMarkDisabled(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
	if err := MarkDisabled(ctx, pool, "public", "s", "off"); err != nil {
		t.Fatalf("mark without the tables: %v", err)
	}
	old := NewStore(pool, "public", "s", "on")
	if err := old.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := old.AcquireEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := old.Save(ctx, State{Slot: 0x2000, SystemID: "1", Actions: map[string]lsn.Position{"o.a": {Commit: 0x3000, Ord: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := MarkDisabled(ctx, pool, "public", "s", "off"); err != nil {
		t.Fatal(err)
	}
	if err := old.Save(ctx, State{Slot: 0x2100, SystemID: "1"}); !errors.Is(err, ErrFenced) {
		t.Fatalf("a writer of the run before checkpoints were disabled could still write: %v", err)
	}
	again := NewStore(pool, "public", "s", "on")
	st, err := again.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DisabledAt == nil || st.DisabledBy != "off" || st.Slot != 0x2000 {
		t.Fatalf("unexpected state after MarkDisabled: %+v", st)
	}
	if _, err := again.AcquireEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	// The slot's position (0x1800 here, as after a rewind by hand) supersedes.
	if err := again.Save(ctx, State{Slot: 0x1800, SystemID: "1", Actions: map[string]lsn.Position{"o.a": {Commit: 0x1800}}}); err != nil {
		t.Fatal(err)
	}
	st, err = again.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DisabledAt != nil || st.Slot != 0x1800 || st.Actions["o.a"] != (lsn.Position{Commit: 0x1800}) {
		t.Fatalf("unexpected state after the first write with checkpoints enabled again: %+v", st)
	}
}
