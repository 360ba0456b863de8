package snapshot

import "testing"

func TestSnapshotSees(t *testing.T) {
	snap, err := parseSnapshot("100:110:102,105")
	if err != nil {
		t.Fatal(err)
	}
	f := func(xid uint32, want bool) {
		t.Helper()
		if got := snap.sees(xid); got != want {
			t.Fatalf("unexpected visibility of %d in %+v; got %v; want %v", xid, snap, got, want)
		}
	}
	f(3, true)    // long committed
	f(99, true)   // below xmin
	f(101, true)  // committed, between xmin and xmax
	f(102, false) // in progress
	f(105, false)
	f(109, true)
	f(110, false) // not yet started
	f(4000, false)

	// Across an epoch: 64-bit ids just past 2^32 and 32-bit ids that wrapped.
	snap, err = parseSnapshot("4294967290:4294967300:4294967295")
	if err != nil {
		t.Fatal(err)
	}
	f(4294967289, true)  // 2^32 - 7: committed long ago
	f(4294967295, false) // in progress
	f(2, true)           // 2^32 + 2, committed after the wrap
	f(4, false)          // 2^32 + 4 = xmax: not yet
	for _, bad := range []string{"", "1:2", "3:2:", "a:2:", "1:2:x"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Fatalf("parseSnapshot(%q) succeeded", bad)
		}
	}
}
