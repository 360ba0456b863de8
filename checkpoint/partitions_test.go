package checkpoint

import (
	"context"
	"fmt"
	"testing"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// The settled positions of transport partitions only rise, per stream: a late save
// below the stored position (an executor that lost the partition) changes nothing.
func TestPartitionsRiseOnly(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	pool := pgtest.Pool(t, db.DSN())
	s := NewPartitions(pool, "obs", "events")
	other := NewPartitions(pool, "obs", "other")
	for _, m := range []*Partitions{s, other, s} { // idempotent
		if err := m.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f := func(save map[int]lsn.Position, want string) {
		t.Helper()
		if err := s.Save(ctx, save); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx, []int{0, 1, 2})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != want {
			t.Fatalf("unexpected positions; got %v; want %s", got, want)
		}
	}
	f(map[int]lsn.Position{0: {Commit: 0x2000, Ord: 3}, 1: {Commit: 0x1000}}, "map[0:0/2000:3 1:0/1000:0]")
	f(map[int]lsn.Position{0: {Commit: 0x2000, Ord: 1}, 1: {Commit: 0x1000, Ord: 5}}, "map[0:0/2000:3 1:0/1000:5]")
	f(map[int]lsn.Position{0: {Commit: 0x3000}}, "map[0:0/3000:0 1:0/1000:5]")
	if got, err := other.Load(ctx, []int{0, 1}); err != nil || len(got) != 0 {
		t.Fatalf("unexpected positions of another stream %v, %v; want none", got, err)
	}
}
