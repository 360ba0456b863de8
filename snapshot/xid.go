package snapshot

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// xidSnapshot is a PostgreSQL MVCC snapshot as pg_current_snapshot() writes it
// ("xmin:xmax:xip,..."), with 64-bit transaction ids: which transactions had committed
// when a chunk was read.
type xidSnapshot struct {
	xmin, xmax uint64
	xip        []uint64 // in progress at the time, sorted
}

// parseSnapshot parses the text form of pg_snapshot.
func parseSnapshot(s string) (xidSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return xidSnapshot{}, fmt.Errorf("parse snapshot %q: want xmin:xmax:xip", s)
	}
	var snap xidSnapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return xidSnapshot{}, fmt.Errorf("parse snapshot %q: xmin: %w", s, err)
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return xidSnapshot{}, fmt.Errorf("parse snapshot %q: xmax: %w", s, err)
	}
	if parts[2] != "" {
		for _, f := range strings.Split(parts[2], ",") {
			x, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return xidSnapshot{}, fmt.Errorf("parse snapshot %q: xip: %w", s, err)
			}
			snap.xip = append(snap.xip, x)
		}
		slices.Sort(snap.xip)
	}
	if snap.xmin > snap.xmax {
		return xidSnapshot{}, fmt.Errorf("parse snapshot %q: xmin after xmax", s)
	}
	return snap, nil
}

// widen turns the 32-bit transaction id of a streamed change into the 64-bit id the
// snapshot uses: the one with those low bits nearest to xmax. Live transaction ids
// are never 2^31 apart, so this is exact.
func (s xidSnapshot) widen(xid uint32) uint64 {
	x := s.xmax&^0xFFFFFFFF | uint64(xid)
	switch {
	case x > s.xmax+1<<31 && x >= 1<<32:
		x -= 1 << 32
	case x+1<<31 < s.xmax:
		x += 1 << 32
	}
	return x
}

// sees reports whether the snapshot sees the effects of the committed transaction
// xid: it had committed before the snapshot was taken.
func (s xidSnapshot) sees(xid uint32) bool {
	x := s.widen(xid)
	if x < s.xmin {
		return true
	}
	if x >= s.xmax {
		return false
	}
	_, found := slices.BinarySearch(s.xip, x)
	return !found
}
