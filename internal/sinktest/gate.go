package sinktest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// Gate wraps a sink for outage tests: once a number of deliveries have succeeded it
// holds the next ones until the test closes Release, so the test can take the server
// away at a known point of a run, and it counts failed deliveries. Unlike Killer it
// leaves the outage to the test, and its Close closes the wrapped sink.
type Gate struct {
	sink      pipeline.BatchSink
	open      int64
	delivered atomic.Int64
	failed    atomic.Int64
	reached   sync.Once
	firstFail sync.Once
	// Reached is closed once the deliveries to let through have succeeded.
	Reached chan struct{}
	// Release is closed by the test to let the held deliveries go on.
	Release chan struct{}
	// FirstFailure is closed at the first failed delivery.
	FirstFailure chan struct{}
}

// NewGate returns a Gate around sink that holds deliveries after open successful ones.
func NewGate(sink pipeline.BatchSink, open int64) *Gate {
	return &Gate{sink: sink, open: open, Reached: make(chan struct{}), Release: make(chan struct{}), FirstFailure: make(chan struct{})}
}

// DeliverBatch waits for Release once the gate has been reached, then delivers
// through the wrapped sink and counts the outcomes.
func (g *Gate) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	if g.delivered.Load() >= g.open {
		g.reached.Do(func() { close(g.Reached) })
		<-g.Release
	}
	g.sink.DeliverBatch(ctx, evs, errs)
	for _, err := range errs {
		if err == nil {
			g.delivered.Add(1)
			continue
		}
		g.failed.Add(1)
		g.firstFail.Do(func() { close(g.FirstFailure) })
	}
}

// Deliver delivers one event as a batch of one.
func (g *Gate) Deliver(ctx context.Context, ev *decoder.Event) error {
	errs := []error{nil}
	g.DeliverBatch(ctx, []*decoder.Event{ev}, errs)
	return errs[0]
}

// Failures returns how many deliveries have failed.
func (g *Gate) Failures() int64 { return g.failed.Load() }

// Close closes the wrapped sink when it has a Close method.
func (g *Gate) Close() error {
	if c, ok := g.sink.(pipeline.Closer); ok {
		return c.Close()
	}
	return nil
}
