package transport

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// heldDLQ stores dead letters only once released.
type heldDLQ struct {
	release chan struct{}
	stored  atomic.Int32
}

func (d *heldDLQ) Put(ctx context.Context, _ pipeline.DeadLetter) error {
	select {
	case <-d.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.stored.Add(1)
	return nil
}

type failSink struct{}

func (failSink) Deliver(context.Context, *decoder.Event) error { return refused{errors.New("refused")} }

type refused struct{ error }

func (refused) Retryable() bool { return false }

// A message is acknowledged to JetStream only when every action of every observer
// that matches it has settled it: one action delivered it, the other failed for good
// and its DLQ write is held, so the message stays in the stream (a restart would
// deliver it again) until the dead letter is stored.
func TestExecutorAcksOnlyWhenEveryActionSettled(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	c, st := connect(t, cfg)
	r, _ := startPublisher(t, c)
	o := &oracle{}
	dlq := &heldDLQ{release: make(chan struct{})}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	opts := ExecutorOptions{ID: "e1", Logger: log, NewPipeline: func(g *Generation) (*pipeline.Pipeline, error) {
		ob := &pipeline.Observer{Name: "o", Schema: "public", Table: "orders", Ops: []decoder.Op{decoder.OpInsert},
			Actions: []*pipeline.Action{
				{ID: "o.ok", Type: "test", Sink: g.Fence(recordSink{o: o, name: "e1"}), Concurrency: 2, Retry: pipeline.RetryPolicy{MaxAttempts: 1}},
				{ID: "o.dlq", Type: "test", Sink: g.Fence(failSink{}), Concurrency: 2, Retry: pipeline.RetryPolicy{MaxAttempts: 1}, OnFailure: pipeline.FailureDLQ},
			}}
		return pipeline.New(pipeline.Options{Observers: []*pipeline.Observer{ob}, Acker: g, DLQ: dlq, Logger: log})
	}}
	e, err := NewExecutor(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("executor: %v", err)
		}
	})
	evs := sinktest.Events(20, 20)
	r.push(t, evs)
	r.waitAcked(t, evs, time.Minute)
	waitFor(t, time.Minute, "every event delivered by the first action", func() bool { return o.distinct() == len(evs) })
	time.Sleep(time.Second) // a wrong executor would acknowledge within milliseconds
	info, err := st.Info(sinktest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(evs)) || dlq.stored.Load() != 0 {
		t.Fatalf("unexpected stream while the DLQ writes are held; got %d messages, %d dead letters; want %d messages, none",
			info.State.Msgs, dlq.stored.Load(), len(evs))
	}
	close(dlq.release)
	waitFor(t, time.Minute, "the stream to drain once the dead letters are stored", func() bool {
		info, err := st.Info(sinktest.Context(t))
		return err == nil && info.State.Msgs == 0
	})
	if got := dlq.stored.Load(); got != int32(len(evs)) {
		t.Fatalf("unexpected dead letters; got %d; want %d", got, len(evs))
	}
}
