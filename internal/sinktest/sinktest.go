// Package sinktest helps test action sinks for real: it builds change events, runs
// them through a real pipeline (workers, retries, DLQ hand-off, acknowledgements) into
// the sink under test, and starts broker processes on free loopback ports.
package sinktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// Events returns n INSERT events of table public.orders in commit order, ten per
// transaction, over keys distinct primary keys (id = i % keys), each with columns id,
// status and total. Event i has id "0/<1000*(i/10+1)>:<i%10+1>".
func Events(n, keys int) []*decoder.Event {
	evs := make([]*decoder.Event, n)
	names := []string{"id", "status", "total"}
	for i := range evs {
		k := strconv.Itoa(i % keys)
		evs[i] = &decoder.Event{
			ID:         lsn.Position{Commit: lsn.LSN(1000 * (i/10 + 1)), Ord: uint32(i%10 + 1)},
			LSN:        lsn.LSN(1000*(i/10+1) - 10 + i%10),
			Xid:        uint32(700 + i/10),
			CommitTime: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
			Schema:     "public",
			Table:      "orders",
			Op:         decoder.OpInsert,
			Key:        &decoder.Row{Names: names[:1], Values: []json.RawMessage{json.RawMessage(k)}},
			New: &decoder.Row{Names: names, Values: []json.RawMessage{
				json.RawMessage(k), json.RawMessage(`"pending"`), json.RawMessage(fmt.Sprintf("%d.50", i))}},
		}
	}
	return evs
}

// DLQ is an in-memory dead-letter queue for tests.
type DLQ struct {
	mu      sync.Mutex
	Letters []pipeline.DeadLetter
}

// Put stores the letter.
func (d *DLQ) Put(_ context.Context, dl pipeline.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Letters = append(d.Letters, dl)
	return nil
}

// Snapshot returns a copy of the stored letters.
func (d *DLQ) Snapshot() []pipeline.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]pipeline.DeadLetter(nil), d.Letters...)
}

// RunOptions configures Run. Zero values mean: 4 workers, no batching, 5 attempts with
// a fixed 100ms delay, DLQ on failure, a 2-minute timeout.
type RunOptions struct {
	Concurrency int
	BatchSize   int
	Retry       pipeline.RetryPolicy
	OnFailure   pipeline.FailurePolicy
	Timeout     time.Duration
	// During, if set, runs concurrently with the delivery (e.g. to kill a broker).
	During func()
}

// Run pushes evs through a real pipeline into sink and waits until every event is
// settled (delivered or dead-lettered). It fails the test on timeout.
func Run(t testing.TB, sink pipeline.Sink, evs []*decoder.Event, o RunOptions) *DLQ {
	t.Helper()
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.Retry.MaxAttempts == 0 {
		o.Retry = pipeline.RetryPolicy{MaxAttempts: 5, Strategy: pipeline.BackoffFixed, Initial: 100 * time.Millisecond}
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	wm := lsn.NewWatermark(lsn.CompareLSNs)
	wm.Reset(0)
	dlq := &DLQ{}
	obs := &pipeline.Observer{Name: "test", Schema: "public", Table: "orders",
		Ops: []decoder.Op{decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete},
		Actions: []*pipeline.Action{{ID: "test.sink", Type: "test", Sink: sink, Concurrency: o.Concurrency,
			BatchSize: o.BatchSize, Retry: o.Retry, OnFailure: o.OnFailure}}}
	p, err := pipeline.New(pipeline.Options{Observers: []*pipeline.Observer{obs}, Acker: wm, DLQ: dlq, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
	}()
	var last lsn.LSN
	for i := 0; i < len(evs); {
		j := i
		var tickets []lsn.Ticket
		for j < len(evs) && evs[j].ID.Commit == evs[i].ID.Commit {
			tickets = append(tickets, wm.Dispatch(evs[j].ID.Commit))
			j++
		}
		p.Push(evs[i:j], tickets)
		last = evs[i].ID.Commit + 1
		wm.Ack(wm.Dispatch(last)) // the transaction's commit marker
		i = j
	}
	if o.During != nil {
		go o.During()
	}
	deadline := time.Now().Add(o.Timeout)
	for {
		if got, _ := wm.Acked(); got >= last {
			return dlq
		}
		if time.Now().After(deadline) {
			got, _ := wm.Acked()
			t.Fatalf("events not settled within %v: watermark %v, want %v", o.Timeout, got, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Context returns a context cancelled a minute from now or when t ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
