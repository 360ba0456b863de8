package transport

import (
	"fmt"
	"slices"
	"testing"
)

// TestAssignment: every partition has exactly one owner among the members, each
// member holds n/len(members) partitions rounded down or up, every member computes
// the same answer whatever the order it lists the members in, and desired agrees.
func TestAssignment(t *testing.T) {
	check := func(ms []string, n int) {
		t.Helper()
		got := Assignment(ms, n)
		share := map[string]int{}
		for p, owner := range got {
			if !slices.Contains(ms, owner) {
				t.Fatalf("unexpected owner of partition %d of %d among %v; got %q", p, n, ms, owner)
			}
			share[owner]++
		}
		for _, m := range ms {
			d := desired(m, ms, n)
			for p, owner := range got {
				if d[p] != (owner == m) {
					t.Fatalf("desired(%s) disagrees about partition %d; owner %s", m, p, owner)
				}
			}
			if s := share[m]; s < n/len(ms) || s > (n+len(ms)-1)/len(ms) {
				t.Fatalf("unexpected share of %s among %v; got %d of %d partitions; want %d or %d (all: %v)",
					m, ms, s, n, n/len(ms), (n+len(ms)-1)/len(ms), share)
			}
		}
		rev := slices.Clone(ms)
		slices.Reverse(rev)
		if other := Assignment(rev, n); !slices.Equal(other, got) {
			t.Fatalf("the member list's order changed the assignment:\n%v\n%v", got, other)
		}
	}
	// These three ids are from a CI run where plain rendezvous hashing gave the
	// first none of 8 partitions; it also split 16 partitions 8/2/6 in a bench run.
	check([]string{"vm-21931", "vm-21941", "vm-21950"}, 8)
	for trial := range 200 {
		for m := 1; m <= 6; m++ {
			var ms []string
			for i := range m {
				ms = append(ms, fmt.Sprintf("executor-%d-%d", trial, i))
			}
			for _, n := range []int{1, 3, 8, 16, 64} {
				check(ms, n)
			}
		}
	}
	if got := Assignment(nil, 4); !slices.Equal(got, []string{"", "", "", ""}) {
		t.Fatalf("unexpected assignment without members; got %q", got)
	}
	if got := Assignment([]string{"a", "a", "b"}, 4); slices.Index(got, "") >= 0 {
		t.Fatalf("a repeated member left a partition without owner: %q", got)
	}
}

// TestAssignmentMovesLittle: a join moves about the partitions the new member takes
// (16 over 3 → 4 executors: 4 at best), not most of them.
func TestAssignmentMovesLittle(t *testing.T) {
	moved, trials := 0, 300
	for trial := range trials {
		ms := []string{fmt.Sprintf("e-%d-a", trial), fmt.Sprintf("e-%d-b", trial), fmt.Sprintf("e-%d-c", trial), fmt.Sprintf("e-%d-d", trial)}
		a, b := Assignment(ms[:3], 16), Assignment(ms, 16)
		for p := range a {
			if a[p] != b[p] {
				moved++
			}
		}
	}
	if avg := float64(moved) / float64(trials); avg > 6 {
		t.Fatalf("a join moved %.1f of 16 partitions on average; want at most 6", avg)
	}
}
