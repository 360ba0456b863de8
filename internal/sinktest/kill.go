package sinktest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// Killer wraps a sink and, once N deliveries have succeeded, kills the server process
// and starts it again (after Down) from a goroutine: a restart in the middle of a run
// whatever the speed of the machine. Deliveries that start after the N-th success wait
// until the process is dead, so some of them surely fail. Killer hides the sink's
// Close: the test closes the sink.
type Killer struct {
	sink    pipeline.Sink
	n       int64
	proc    *Process
	done    atomic.Int64
	failed  atomic.Int64
	tripped atomic.Bool
	once    sync.Once
	killed  chan struct{}
	ended   chan struct{}
	// Down is how long the server stays dead (300ms when 0).
	Down time.Duration
}

// KillAfter returns a Killer of p around sink that trips after n successful deliveries.
func KillAfter(sink pipeline.Sink, n int, p *Process) *Killer {
	return &Killer{sink: sink, n: int64(n), proc: p, killed: make(chan struct{}), ended: make(chan struct{})}
}

func (k *Killer) trip(delivered, failed int) {
	k.failed.Add(int64(failed))
	if k.done.Add(int64(delivered)) < k.n {
		return
	}
	k.tripped.Store(true)
	k.once.Do(func() {
		go func() {
			defer close(k.ended)
			k.proc.Kill()
			close(k.killed)
			down := k.Down
			if down == 0 {
				down = 300 * time.Millisecond
			}
			time.Sleep(down)
			k.proc.Start()
		}()
	})
}

func (k *Killer) gate() {
	if k.tripped.Load() {
		<-k.killed
	}
}

// Deliver delivers through the wrapped sink.
func (k *Killer) Deliver(ctx context.Context, ev *decoder.Event) error {
	k.gate()
	err := k.sink.Deliver(ctx, ev)
	if err == nil {
		k.trip(1, 0)
	} else {
		k.trip(0, 1)
	}
	return err
}

// DeliverBatch delivers through the wrapped sink's DeliverBatch, or one by one when
// it has none.
func (k *Killer) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	k.gate()
	if bs, ok := k.sink.(pipeline.BatchSink); ok {
		bs.DeliverBatch(ctx, evs, errs)
	} else {
		for i, ev := range evs {
			errs[i] = k.sink.Deliver(ctx, ev)
		}
	}
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	k.trip(ok, len(errs)-ok)
}

// Wait waits until the server has been restarted, and fails the test unless some
// delivery failed while it was down.
func (k *Killer) Wait(t testing.TB) {
	t.Helper()
	select {
	case <-k.ended:
	case <-time.After(2 * time.Minute):
		t.Fatal("the server was not restarted")
	}
	if k.failed.Load() == 0 {
		t.Fatal("no delivery failed: the server was not killed mid-run")
	}
	t.Logf("%d failed attempts while the server was down", k.failed.Load())
}
