package transport

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// delivery is one delivery the oracle saw.
type delivery struct {
	executor string
	id       string
	key      string
	gen      uint64
}

// oracle records every delivery of every executor, in arrival order.
type oracle struct {
	mu  sync.Mutex
	got []delivery
}

func (o *oracle) add(d delivery) {
	o.mu.Lock()
	o.got = append(o.got, d)
	o.mu.Unlock()
}

func (o *oracle) snapshot() []delivery {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]delivery(nil), o.got...)
}

// distinct returns how many different events were delivered.
func (o *oracle) distinct() int {
	seen := map[string]bool{}
	for _, d := range o.snapshot() {
		seen[d.id] = true
	}
	return len(seen)
}

// check checks that every event was delivered, nothing else was, and that for each
// row the first deliveries of its events follow commit order; a repeat is only ever
// an event already delivered. It returns the number of repeats.
func (o *oracle) check(t *testing.T, evs []*decoder.Event) int {
	t.Helper()
	index := map[string]int{}
	for i, ev := range evs {
		index[ev.ID.String()] = i
	}
	seen := map[string]bool{}
	last := map[string]int{}
	repeats := 0
	for _, d := range o.snapshot() {
		i, ok := index[d.id]
		if !ok {
			t.Fatalf("unexpected delivery of unknown event %s", d.id)
		}
		if seen[d.id] {
			repeats++
			continue
		}
		seen[d.id] = true
		if prev, ok := last[d.key]; ok && i < prev {
			t.Fatalf("unexpected order for row %s: event %d delivered after event %d", d.key, i, prev)
		}
		last[d.key] = i
	}
	for _, ev := range evs {
		if !seen[ev.ID.String()] {
			t.Fatalf("event %s was never delivered", ev.ID)
		}
	}
	return repeats
}

// rowKey is the row of an event, for the oracle.
func rowKey(ev *decoder.Event) string { return string(ev.Key.Values[0]) }

// recordSink delivers to the oracle under the executor's name.
type recordSink struct {
	o    *oracle
	name string
}

func (s recordSink) Deliver(_ context.Context, ev *decoder.Event) error {
	s.o.add(delivery{executor: s.name, id: ev.ID.String(), key: rowKey(ev)})
	return nil
}

// newPipeline builds the pipeline of one generation: one observer on public.orders
// delivering through sink with 8 workers.
func newPipeline(sink func() pipeline.Sink, log zerolog.Logger) func(g *Generation) (*pipeline.Pipeline, error) {
	return func(g *Generation) (*pipeline.Pipeline, error) {
		o := &pipeline.Observer{Name: "o", Schema: "public", Table: "orders",
			Ops: []decoder.Op{decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete},
			Actions: []*pipeline.Action{{ID: "o.0", Type: "test", Sink: g.Fence(sink()), Concurrency: 8,
				Retry: pipeline.RetryPolicy{MaxAttempts: 1000, Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}}}}
		return pipeline.New(pipeline.Options{Observers: []*pipeline.Observer{o}, Acker: g, Logger: log})
	}
}

// runExecutor runs an in-process executor until the returned stop is called.
func runExecutor(t testing.TB, cfg Config, name string, o *oracle) (*Executor, func()) {
	t.Helper()
	return runExecutorOpts(t, cfg, name, o, ExecutorOptions{})
}

// runExecutorOpts is runExecutor with options (ID, Logger and NewPipeline are
// filled in).
func runExecutorOpts(t testing.TB, cfg Config, name string, o *oracle, opts ExecutorOptions) (*Executor, func()) {
	t.Helper()
	return runExecutorSink(t, cfg, name, func() pipeline.Sink { return recordSink{o: o, name: name} }, opts)
}

// runExecutorGate runs executor e1 delivering through gate.
func runExecutorGate(t testing.TB, cfg Config, gate gateSink, opts ExecutorOptions) (*Executor, func()) {
	t.Helper()
	return runExecutorSink(t, cfg, "e1", func() pipeline.Sink { return gate }, opts)
}

func runExecutorSink(t testing.TB, cfg Config, name string, sink func() pipeline.Sink, opts ExecutorOptions) (*Executor, func()) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	c, _ := connect(t, cfg)
	opts.ID, opts.Logger = name, log
	opts.NewPipeline = newPipeline(sink, log)
	e, err := NewExecutor(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.Run(ctx); err != nil {
			t.Errorf("executor %s: %v", name, err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return e, stop
}

// waitDrained waits until every event was delivered and the stream is empty (every
// message acknowledged).
func waitDrained(t testing.TB, c *Client, o *oracle, n int, d time.Duration) {
	t.Helper()
	st, err := c.js.Stream(sinktest.Context(t), c.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, d, fmt.Sprintf("%d events delivered and acknowledged", n), func() bool {
		info, err := st.Info(sinktest.Context(t))
		return err == nil && info.State.Msgs == 0 && o.distinct() >= n
	})
}

func TestExecutorDeliversInOrderAndAcks(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	c, _ := connect(t, cfg)
	r, _ := startPublisher(t, c)
	o := &oracle{}
	e, _ := runExecutor(t, cfg, "e1", o)
	evs := sinktest.Events(3000, 60)
	r.push(t, evs)
	waitDrained(t, c, o, len(evs), 2*time.Minute)
	if repeats := o.check(t, evs); repeats != 0 {
		t.Fatalf("unexpected repeats with one executor and no failure; got %d; want 0", repeats)
	}
	if got := e.Owned(); len(got) != cfg.Partitions {
		t.Fatalf("unexpected partitions owned by the only executor; got %v; want all %d", got, cfg.Partitions)
	}
}

// Scale 1 → 3 → 1 while streaming: partitions move, nothing is lost, each row's
// order holds.
func TestExecutorsScaleOneThreeOne(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	cfg.Partitions = 12
	c, _ := connect(t, cfg)
	r, _ := startPublisher(t, c)
	o := &oracle{}
	e1, _ := runExecutor(t, cfg, "e1", o)
	evs := sinktest.Events(9000, 200)
	r.push(t, evs[:3000])
	e2, stop2 := runExecutor(t, cfg, "e2", o)
	e3, stop3 := runExecutor(t, cfg, "e3", o)
	waitFor(t, time.Minute, "three executors sharing the partitions", func() bool {
		return len(e1.Owned()) > 0 && len(e2.Owned()) > 0 && len(e3.Owned()) > 0 &&
			len(e1.Owned())+len(e2.Owned())+len(e3.Owned()) == cfg.Partitions
	})
	r.push(t, evs[3000:6000])
	stop2()
	stop3()
	r.push(t, evs[6000:])
	waitFor(t, time.Minute, "the last executor owning every partition", func() bool { return len(e1.Owned()) == cfg.Partitions })
	waitDrained(t, c, o, len(evs), 2*time.Minute)
	repeats := o.check(t, evs)
	t.Logf("repeats: %d", repeats)
}

// Rendezvous hashing spreads partitions over members and every partition has
// exactly one desired owner.
func TestDesiredSpreadsPartitions(t *testing.T) {
	ms := []string{"e1", "e2", "e3"}
	seen := map[int]string{}
	for _, m := range ms {
		got := desired(m, ms, 12)
		if len(got) == 0 {
			t.Fatalf("unexpected: member %s desires no partition of 12", m)
		}
		for p := range got {
			if prev, dup := seen[p]; dup {
				t.Fatalf("partition %d desired by %s and %s", p, prev, m)
			}
			seen[p] = m
		}
	}
	if len(seen) != 12 {
		t.Fatalf("unexpected partitions covered; got %d; want 12", len(seen))
	}
}

// On a three-node cluster with an R3 stream and R3 bucket, killing the stream's
// leader node while two executors work loses nothing and keeps each row's order,
// and the executors go on (waitDrained: every event delivered and acknowledged).
//
// Until the fixes of this test's commit it was left out of make test: after the
// node loss the executors retried for more than a minute, because (1) each
// generation listed the stream's consumers with CONSUMER.LIST, which the meta
// leader answers only once every consumer's leader answered, and after a node
// loss some consumer is nearly always still electing one (nats-server logs "Did
// not receive all consumer info results"), (2) a new R3 consumer whose preferred
// leader is the dead node answers only after an election timeout, longer than a
// call's timeout, and each failure threw the whole generation away (new consumer
// names, more consumers to delete and create), (3) members were listed with the
// bucket's Keys, which creates a consumer per call, and (4) a renewal that timed
// out dropped every partition at once.
func TestExecutorsSurviveNodeLossR3(t *testing.T) {
	nodes, url := startCluster(t)
	cfg := testConfig(url)
	cfg.Replicas = 3
	cfg.Partitions = 8
	c, st := connect(t, cfg)
	r, _ := startPublisher(t, c)
	o := &oracle{}
	runExecutor(t, cfg, "e1", o)
	runExecutor(t, cfg, "e2", o)
	evs := sinktest.Events(6000, 200)
	r.push(t, evs[:2000])
	waitFor(t, time.Minute, "deliveries under way", func() bool { return o.distinct() >= 1000 })
	info, err := st.Info(sinktest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	for i, n := range nodes {
		if info.Cluster.Leader == fmt.Sprintf("n%d", i) {
			n.Kill()
			killed = true
		}
	}
	if !killed {
		t.Fatalf("unexpected stream leader %q", info.Cluster.Leader)
	}
	r.push(t, evs[2000:])
	waitDrained(t, c, o, len(evs), time.Minute)
	t.Logf("repeats: %d", o.check(t, evs))
}
