package cdc

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

func TestCommitLogOldestPending(t *testing.T) {
	var c commitLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= 5; i++ {
		c.push(lsn.LSN(i*100), t0.Add(time.Duration(i)*time.Second))
	}
	f := func(settled lsn.LSN, want time.Time, wantOK bool) {
		t.Helper()
		got, ok := c.oldest(settled)
		if ok != wantOK || !got.Equal(want) {
			t.Fatalf("unexpected oldest pending at settled %s; got %v, %v; want %v, %v", settled, got, ok, want, wantOK)
		}
	}
	f(0, t0.Add(time.Second), true)
	f(100, t0.Add(2*time.Second), true) // the first transaction ends at 100: settled
	f(250, t0.Add(3*time.Second), true) // 200 settled, 300 not
	f(500, time.Time{}, false)          // all settled: no lag
	c.push(600, t0.Add(6*time.Second))
	c.reset()
	f(0, time.Time{}, false)
}

// TestCommitLogBoundedNeverUnderstates fills the log past its bound: it stays bounded
// and the commit time it reports is never later than the true oldest pending one.
func TestCommitLogBoundedNeverUnderstates(t *testing.T) {
	var c commitLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 3*maxCommitMarks + 7
	for i := 1; i <= n; i++ {
		c.push(lsn.LSN(i), t0.Add(time.Duration(i)*time.Millisecond))
		if len(c.marks) > maxCommitMarks {
			t.Fatalf("commit log grew past its bound: %d marks", len(c.marks))
		}
	}
	for _, settled := range []int{0, 1, 100, 5000, n - 1} {
		got, ok := c.oldest(lsn.LSN(settled))
		truth := t0.Add(time.Duration(settled+1) * time.Millisecond)
		if !ok || got.After(truth) {
			t.Fatalf("settled %d: oldest pending commit time %v is later than the truth %v", settled, got, truth)
		}
	}
	if _, ok := c.oldest(lsn.LSN(n)); ok {
		t.Fatalf("everything settled but the log still reports a pending transaction")
	}
}
