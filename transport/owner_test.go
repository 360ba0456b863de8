package transport

import "testing"

// TestAssignment: every partition has exactly the owner desired gives it, and
// each member's share is what desired says it should hold.
func TestAssignment(t *testing.T) {
	ms := []string{"vm-21931", "vm-21941", "vm-21950"}
	got := Assignment(ms, 8)
	for p, owner := range got {
		if owner == "" {
			t.Fatalf("partition %d has no owner in %v", p, got)
		}
		if !desired(owner, ms, 8)[p] {
			t.Fatalf("unexpected owner of partition %d; got %s, which desired does not give it", p, owner)
		}
	}
	// These three ids are from a CI run where hashing gave the first none.
	for p, owner := range got {
		if owner == "vm-21931" {
			t.Fatalf("unexpected owner of partition %d; got vm-21931; want none for it", p)
		}
	}
}
