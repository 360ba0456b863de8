package database

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// BenchmarkDeliver pushes SINK_BENCH_EVENTS events (default 20000) per iteration
// through a real pipeline (8 workers) into a function that inserts its argument into
// a table, and reports events/s and the 99th percentile of one delivery (one call, or
// one batch) in ms: one transaction per event, and batches of 100 events per
// transaction (batch_size).
func BenchmarkDeliver(b *testing.B) {
	b.Run("batch=1", func(b *testing.B) { benchDeliver(b, 1) })
	b.Run("batch=100", func(b *testing.B) { benchDeliver(b, 100) })
}

func benchDeliver(b *testing.B, batch int) {
	n := sinktest.BenchEvents(b, 20000)
	db := pgtest.NewDB(b)
	db.Exec(`CREATE TABLE sink_events (id text PRIMARY KEY, arg jsonb NOT NULL);
		CREATE FUNCTION sink_event(arg jsonb) RETURNS void LANGUAGE sql AS $$
			INSERT INTO sink_events VALUES (arg->'event'->>'id', arg)
			ON CONFLICT (id) DO UPDATE SET arg = excluded.arg $$;`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(db.DSN())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	scfg := Config{FunctionName: "sink_event", Params: []byte(`{"source": "bench"}`)}
	var sink interface {
		Deliver(context.Context, *decoder.Event) error
		p99() time.Duration
	}
	if batch > 1 {
		scfg.BatchSize = batch
		bs, err := New(b.Context(), scfg, sinks.Deps{DB: pool})
		if err != nil {
			b.Fatal(err)
		}
		sink = &timedBatch{timed: timed{Sink: bs}}
	} else {
		sink = &timed{Sink: newSink(b, scfg, pool)}
	}
	evs := sinktest.Events(n, 1000)
	b.ResetTimer()
	var elapsed time.Duration
	for range b.N {
		fresh := sinktest.Copies(evs)
		start := time.Now()
		dlq := sinktest.Run(b, sink, fresh, sinktest.RunOptions{Concurrency: 8, BatchSize: batch})
		elapsed += time.Since(start)
		if len(dlq.Snapshot()) != 0 {
			b.Fatalf("dead letters: %v", dlq.Snapshot()[0].Err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(sink.p99().Seconds()*1000, "p99-ms")
}

// timed records how long each call of the real sink takes.
type timed struct {
	*Sink
	mu   sync.Mutex
	durs []time.Duration
}

func (t *timed) Deliver(ctx context.Context, ev *decoder.Event) error {
	start := time.Now()
	err := t.Sink.Deliver(ctx, ev)
	d := time.Since(start)
	t.mu.Lock()
	t.durs = append(t.durs, d)
	t.mu.Unlock()
	return err
}

func (t *timed) p99() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.durs) == 0 {
		return 0
	}
	s := slices.Clone(t.durs)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// timedBatch records how long each batch of the real batching sink takes.
type timedBatch struct {
	timed
}

func (t *timedBatch) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	start := time.Now()
	t.Sink.DeliverBatch(ctx, evs, errs)
	d := time.Since(start)
	t.mu.Lock()
	t.durs = append(t.durs, d)
	t.mu.Unlock()
}
