package pipeline

import (
	"context"
	"fmt"
	"testing"
)

// newReadyRunner returns a runner whose ready list holds n keys, each with one entry.
func newReadyRunner(n int) *runner {
	r := &runner{wake: make(chan struct{}, 1)}
	for i := range n {
		r.ready = append(r.ready, &keyQueue{key: fmt.Sprint(i), entries: []*entry{{}}})
	}
	return r
}

// The ready list is first in, first out whatever the sizes taken, across the
// compactions of the list, with keys added in between.
func TestTakeKeepsOrder(t *testing.T) {
	r := newReadyRunner(5000)
	next, added := 0, 5000
	var dst []job
	for taken := 0; taken < 8000; {
		dst = r.take(context.Background(), dst[:0], 1+taken%7)
		for _, j := range dst {
			if want := fmt.Sprint(next); j.kq.key != want {
				t.Fatalf("unexpected key taken; got %s; want %s", j.kq.key, want)
			}
			next++
		}
		taken += len(dst)
		if taken%500 < 7 && added < 9000 {
			for range 100 {
				r.ready = append(r.ready, &keyQueue{key: fmt.Sprint(added), entries: []*entry{{}}})
				added++
			}
		}
	}
	if got, want := len(r.ready)-r.readyHead, added-next; got != want {
		t.Fatalf("unexpected keys left; got %d; want %d", got, want)
	}
	for i, kq := range r.ready[:r.readyHead] {
		if kq != nil {
			t.Fatalf("the list still holds taken key %s at %d", kq.key, i)
		}
	}
}

// BenchmarkTake takes one key at a time from a list of 20,000 ready keys (a busy
// action whose rows are all distinct): the cost of a take must not grow with the list.
func BenchmarkTake(b *testing.B) {
	const keys = 20000
	var dst []job
	r := newReadyRunner(keys)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(r.ready) == r.readyHead {
			b.StopTimer()
			r = newReadyRunner(keys)
			b.StartTimer()
		}
		dst = r.take(context.Background(), dst[:0], 1)
	}
}
