package checkpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func TestLease(t *testing.T) {
	ctx := context.Background()
	pool := newPoolDB(t)
	a := NewStore(pool, "public", "s", "a")
	b := NewStore(pool, "public", "s", "b")
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ok, h, err := a.TryLease(ctx, 400*time.Millisecond)
	if err != nil || !ok || h.Epoch != 1 {
		t.Fatalf("a could not take a free lease: %v %+v %v", ok, h, err)
	}
	ok, h, err = b.TryLease(ctx, 400*time.Millisecond)
	if err != nil || ok || h.ListenerID != "a" || h.ExpiresAt.IsZero() {
		t.Fatalf("b took a lease a holds: %v %+v %v", ok, h, err)
	}
	if err := a.RenewLease(ctx, 400*time.Millisecond); err != nil {
		t.Fatalf("a could not renew its lease: %v", err)
	}
	// a stops renewing (a paused process): once the lease expires, b takes it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, h, err = b.TryLease(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never took the expired lease: %+v", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.Epoch != 2 {
		t.Fatalf("unexpected epoch after the takeover %d", h.Epoch)
	}
	// a wakes up: it is fenced, for its lease and for its checkpoints.
	if err := a.RenewLease(ctx, time.Minute); !errors.Is(err, ErrFenced) {
		t.Fatalf("a renewed a lease it lost: %v", err)
	}
	if err := a.Save(ctx, State{Slot: 99, SystemID: "x", Actions: map[string]lsn.Position{}}); !errors.Is(err, ErrFenced) {
		t.Fatalf("a saved a checkpoint after losing the lease: %v", err)
	}
	// b releases on a clean stop: a takes it at once.
	if err := b.ReleaseLease(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, h, err = a.TryLease(ctx, time.Minute); err != nil || !ok || h.Epoch != 3 {
		t.Fatalf("a could not take a released lease: %v %+v %v", ok, h, err)
	}
}

// TestRenewExpiredLease lets the lease expire without anybody taking it, as while
// PostgreSQL restarts or a lock holds renewals up: the holder renews it, because it
// still owns the slot. Only a lease another instance took is fenced.
func TestRenewExpiredLease(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
	a := NewStore(pool, "public", "s", "a")
	b := NewStore(pool, "public", "s", "b")
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := a.TryLease(ctx, 200*time.Millisecond); err != nil || !ok {
		t.Fatalf("a could not take a free lease: %v %v", ok, err)
	}
	expired := func() bool {
		return pgtest.QueryValue[bool](db, `SELECT expires_at < now() FROM observer_epochs WHERE slot_name = 's'`)
	}
	waitUntil(t, "the lease to expire", expired)
	if err := a.RenewLease(ctx, time.Minute); err != nil {
		t.Fatalf("a could not renew its expired lease that nobody took: %v", err)
	}
	if ok, h, err := b.TryLease(ctx, time.Minute); err != nil || ok || h.ListenerID != "a" {
		t.Fatalf("b took the lease a renewed: %v %+v %v", ok, h, err)
	}
	// Expired and taken: a is fenced, and told by whom.
	if err := a.RenewLease(ctx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the lease to expire again", expired)
	if ok, _, err := b.TryLease(ctx, time.Minute); err != nil || !ok {
		t.Fatalf("b could not take the expired lease: %v %v", ok, err)
	}
	err := a.RenewLease(ctx, time.Minute)
	if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "b holds the lease") {
		t.Fatalf("unexpected renewal of a lease b took; got %v; want ErrFenced naming b", err)
	}
}

// TestSaveUnderLockLeavesLeaseAlone holds an ACCESS EXCLUSIVE lock on
// observer_checkpoints: a checkpoint write fails after a short wait (instead of
// blocking) and, while it waits, never holds up a renewal of the lease.
func TestSaveUnderLockLeavesLeaseAlone(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
	a := NewStore(pool, "public", "s", "a")
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := a.TryLease(ctx, time.Minute); err != nil || !ok {
		t.Fatalf("a could not take a free lease: %v %v", ok, err)
	}
	if err := a.Save(ctx, State{Slot: 10, SystemID: "1"}); err != nil {
		t.Fatal(err)
	}
	locker := db.Conn()
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE observer_checkpoints IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	saved := make(chan error, 1)
	go func() { saved <- a.Save(ctx, State{Slot: 20, SystemID: "1"}) }()
	waitUntil(t, "the write to wait for the lock", func() bool {
		return pgtest.QueryValue[bool](db, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')`)
	})
	renewed := make(chan error, 1)
	go func() { renewed <- a.RenewLease(ctx, time.Minute) }()
	select {
	case err := <-renewed:
		if err != nil {
			t.Fatalf("renewal while a checkpoint write waits for a lock: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the lease renewal waited for the checkpoint write, which waits for the table lock")
	}
	select {
	case err := <-saved:
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" || errors.Is(err, ErrFenced) {
			t.Fatalf("unexpected result of a write under a lock; got %v; want lock_not_available (55P03)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the checkpoint write kept waiting for the table lock")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
