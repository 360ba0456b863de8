package checkpoint

import (
	"context"
	"errors"
	"testing"
	"time"

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
