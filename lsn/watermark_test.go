package lsn

import (
	"math/rand/v2"
	"sync"
	"testing"
)

func TestWatermarkInOrder(t *testing.T) {
	w := NewWatermark(CompareLSNs)
	if _, ok := w.Acked(); ok {
		t.Fatalf("empty watermark reports an acknowledged position")
	}
	t1 := w.Dispatch(10)
	t2 := w.Dispatch(20)
	t3 := w.Dispatch(30)
	if !w.Ack(t2) {
		t.Fatalf("Ack(t2) refused")
	}
	if _, ok := w.Acked(); ok {
		t.Fatalf("acknowledged past an outstanding dispatch")
	}
	w.Ack(t1)
	if got, _ := w.Acked(); got != 20 {
		t.Fatalf("unexpected acked; got %v; want 20", got)
	}
	if w.Outstanding() != 1 {
		t.Fatalf("unexpected outstanding; got %d; want 1", w.Outstanding())
	}
	if w.Advance(99) {
		t.Fatalf("Advance succeeded while a dispatch is outstanding")
	}
	w.Ack(t3)
	if got, _ := w.Acked(); got != 30 {
		t.Fatalf("unexpected acked; got %v; want 30", got)
	}
	if w.Ack(t3) || w.Ack(0) || w.Ack(99) {
		t.Fatalf("Ack accepted a ticket that is not outstanding")
	}
	if !w.Advance(40) {
		t.Fatalf("Advance refused with nothing outstanding")
	}
	w.Advance(35)
	if got, _ := w.Acked(); got != 40 {
		t.Fatalf("Advance lowered the position; got %v; want 40", got)
	}
}

func TestWatermarkReplayedPositions(t *testing.T) {
	// After a reconnect the stream re-sends positions at or below ones still in flight.
	w := NewWatermark(CompareLSNs)
	a := w.Dispatch(100)
	b := w.Dispatch(200)
	c := w.Dispatch(200) // replay of b's transaction
	d := w.Dispatch(300)
	w.Ack(a)
	w.Ack(c)
	w.Ack(d)
	if got, _ := w.Acked(); got != 100 {
		t.Fatalf("confirmed past the original of a replayed position; got %v; want 100", got)
	}
	w.Ack(b)
	if got, _ := w.Acked(); got != 300 {
		t.Fatalf("unexpected acked; got %v; want 300", got)
	}
}

func TestWatermarkReset(t *testing.T) {
	w := NewWatermark(ComparePositions)
	old := w.Dispatch(Position{5, 1})
	w.Reset(Position{7, 0})
	if w.Ack(old) {
		t.Fatalf("ticket from before Reset accepted")
	}
	if got, ok := w.Acked(); !ok || got != (Position{7, 0}) {
		t.Fatalf("unexpected acked after Reset; got %v %v", got, ok)
	}
	if w.Outstanding() != 0 {
		t.Fatalf("unexpected outstanding after Reset")
	}
}

func TestWatermarkDone(t *testing.T) {
	w := NewWatermark(CompareLSNs)
	a, b, c := w.Dispatch(10), w.Dispatch(20), w.Dispatch(30)
	f := func(tk Ticket, want bool) {
		t.Helper()
		if got := w.Done(tk); got != want {
			t.Fatalf("unexpected Done(%d); got %v; want %v", tk, got, want)
		}
	}
	f(0, true)
	f(a, false)
	w.Ack(b)
	f(b, false) // a is still outstanding
	w.Ack(a)
	f(a, true)
	f(b, true)
	f(c, false)
	f(c+1, false) // never issued
	w.Reset(40)
	f(c, true) // forgotten by Reset
}

// TestWatermarkRandomOrder checks the defining property against a model: for any order
// of acknowledgements, Acked is the maximum over the longest acknowledged prefix.
func TestWatermarkRandomOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		w := NewWatermark(CompareLSNs)
		n := 1 + r.IntN(500)
		pos := make([]LSN, n)
		tickets := make([]Ticket, n)
		done := make([]bool, n)
		for i := range pos {
			pos[i] = LSN(r.IntN(1000)) // not monotonic on purpose
			tickets[i] = w.Dispatch(pos[i])
		}
		for _, i := range r.Perm(n) {
			w.Ack(tickets[i])
			done[i] = true
			var want LSN
			has := false
			for j := 0; j < n && done[j]; j++ {
				if !has || pos[j] > want {
					want, has = pos[j], true
				}
			}
			got, ok := w.Acked()
			if ok != has || (has && got != want) {
				t.Fatalf("round %d: unexpected acked; got %v %v; want %v %v", round, got, ok, want, has)
			}
			prefix := 0 // tickets[:prefix] are all acknowledged
			for prefix < n && done[prefix] {
				prefix++
			}
			for _, j := range []int{prefix - 1, prefix, r.IntN(n)} {
				if j >= 0 && j < n && w.Done(tickets[j]) != (j < prefix) {
					t.Fatalf("round %d: unexpected Done(%d); got %v; want %v", round, tickets[j], j >= prefix, j < prefix)
				}
			}
		}
		if w.Outstanding() != 0 {
			t.Fatalf("outstanding after acknowledging everything: %d", w.Outstanding())
		}
	}
}

func TestWatermarkConcurrent(t *testing.T) {
	w := NewWatermark(CompareLSNs)
	const n = 10000
	ch := make(chan Ticket, n)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tk := range ch {
				w.Ack(tk)
			}
		}()
	}
	for i := 1; i <= n; i++ {
		ch <- w.Dispatch(LSN(i))
	}
	close(ch)
	wg.Wait()
	if got, _ := w.Acked(); got != n {
		t.Fatalf("unexpected acked; got %v; want %v", got, LSN(n))
	}
}

func BenchmarkWatermarkDispatchAck(b *testing.B) {
	w := NewWatermark(CompareLSNs)
	const window = 256
	var tickets [window]Ticket
	for i := range tickets {
		tickets[i] = w.Dispatch(LSN(i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.Ack(tickets[i%window])
		tickets[i%window] = w.Dispatch(LSN(window + i))
		i++
	}
}

func BenchmarkWatermarkPositions(b *testing.B) {
	w := NewWatermark(ComparePositions)
	b.ReportAllocs()
	var i uint32
	for b.Loop() {
		t := w.Dispatch(Position{Commit: 1, Ord: i})
		w.Ack(t)
		i++
	}
}
