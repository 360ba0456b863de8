package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// ExecutorOptions configures an Executor.
type ExecutorOptions struct {
	// ID names the executor in the ownership bucket; it must be unique among the
	// running executors (default: host name and process id). Characters other than
	// letters, digits, '-' and '_' become '_'.
	ID string
	// NewPipeline builds the stage graph for one generation of owned partitions
	// (required). The pipeline must use g as its Acker and wrap every action's sink
	// with g.Fence; it must not skip events by checkpoint (Options.Start), since
	// partitions interleave ids. Its Run closes the sinks, so each call builds new
	// ones.
	NewPipeline func(g *Generation) (*pipeline.Pipeline, error)
	Logger      zerolog.Logger
	// Metrics receives the executor's metrics; nil uses a private set.
	Metrics *metrics.Set
}

// Executor is the executor side of the transport: it claims partitions in the
// ownership bucket, reads each owned partition in order from its own durable
// consumer, runs the events through a pipeline and acknowledges each message to
// JetStream once every matching action settled it (delivered or stored in the DLQ).
//
// The partitions it owns are served by one Generation at a time: whenever the set
// changes (a partition gained, released or lost) the current generation stops (it
// stops fetching, lets the pipeline settle what it holds while the leases last,
// then cancels it) and a new one starts, with a new consumer per partition that
// begins at the partition's first unacknowledged message — so nothing is skipped
// and each row's events are handed over in order.
type Executor struct {
	c    *Client
	opts ExecutorOptions
	id   string
	log  zerolog.Logger

	mu    sync.Mutex
	owned []int

	gens       atomic.Uint64
	rebalances *metrics.Counter
	fencedAcks *metrics.Counter
	fencedDel  *metrics.Counter
}

// NewExecutor returns an Executor on c; it starts no goroutine.
func NewExecutor(c *Client, opts ExecutorOptions) (*Executor, error) {
	if opts.NewPipeline == nil {
		return nil, errors.New("transport: NewPipeline is required")
	}
	id := opts.ID
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	id = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, id)
	set := opts.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	e := &Executor{c: c, opts: opts, id: id, log: opts.Logger.With().Str("executor", id).Logger(),
		rebalances: set.GetOrCreateCounter(`observer_transport_rebalances_total`),
		fencedAcks: set.GetOrCreateCounter(`observer_transport_fenced_total{what="ack"}`),
		fencedDel:  set.GetOrCreateCounter(`observer_transport_fenced_total{what="deliver"}`),
	}
	set.GetOrCreateGauge(`observer_transport_owned_partitions`, func() float64 { return float64(len(e.Owned())) })
	return e, nil
}

// ID returns the executor's id in the ownership bucket.
func (e *Executor) ID() string { return e.id }

// Owned returns the partitions the executor serves now, sorted; the caller owns the
// slice.
func (e *Executor) Owned() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.owned...)
}

// Run claims, serves and renews partitions until ctx is cancelled; then it stops
// its generation (settling what it can while its leases last), releases its
// partitions and leaves, so the others take them at once. It returns an error only
// for a message that is not an event (a foreign publisher on the stream).
func (e *Executor) Run(ctx context.Context) error {
	ttl := e.c.cfg.LeaseTTL
	var kv jetstream.KeyValue
	for {
		var err error
		cctx, cancel := e.c.timeout(ctx)
		kv, err = e.c.ownersKV(cctx)
		cancel()
		if err == nil {
			break
		}
		e.log.Warn().Err(err).Msg("transport ownership bucket unavailable")
		if !sleep(ctx, ttl/3) {
			return nil
		}
	}
	l := newLeases(e, kv)
	lctx, stopLeases := context.WithCancel(ctx)
	var renewer sync.WaitGroup
	renewer.Add(1)
	go func() { defer renewer.Done(); l.run(lctx) }()
	var gen *Generation
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
		defer cancel()
		if gen != nil {
			gen.stop(sctx) // the leases go on being renewed meanwhile
		}
		stopLeases()
		renewer.Wait()
		held, _ := l.held()
		for _, p := range held {
			l.release(sctx, p)
		}
		kv.Delete(sctx, membersPrefix+e.id)
		e.setOwned(nil)
	}()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		e.step(ctx, kv, l, &gen)
		if gen != nil {
			if err := gen.failedErr(); err != nil {
				gen.stop(ctx)
				gen = nil
				if errors.Is(err, errPermanent) {
					return err
				}
			}
		}
		held, epochs := l.held()
		if gen == nil || !sameEpochs(gen.epochs, epochs) {
			if gen != nil {
				gen.stop(ctx)
				gen = nil
			}
			e.rebalances.Inc()
			if len(held) > 0 {
				g, err := e.startGeneration(ctx, l, epochs)
				if err != nil {
					e.log.Warn().Err(err).Msg("transport generation failed to start")
				} else {
					gen = g
				}
			}
			e.setOwned(held)
		}
		var failed <-chan struct{}
		if gen != nil {
			failed = gen.failed
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-l.lost:
		case <-failed:
		}
	}
}

func sameEpochs(a, b map[int]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for p, ep := range a {
		if b[p] != ep {
			return false
		}
	}
	return true
}

// step heartbeats, releases what another executor should own and claims what
// this one should. A partition is released only after the generation serving it
// stopped.
func (e *Executor) step(ctx context.Context, kv jetstream.KeyValue, l *leases, gen **Generation) {
	cctx, cancel := e.c.timeout(ctx)
	defer cancel()
	if _, err := kv.Put(cctx, membersPrefix+e.id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		e.log.Warn().Err(err).Msg("transport heartbeat failed")
	}
	ms, err := members(cctx, kv)
	if err != nil {
		e.log.Warn().Err(err).Msg("transport members unknown")
		ms = nil
	}
	if !contains(ms, e.id) {
		ms = append(ms, e.id)
	}
	want := desired(e.id, ms, e.c.cfg.Partitions)
	held, _ := l.held()
	for _, p := range held {
		if want[p] {
			continue
		}
		if *gen != nil {
			(*gen).stop(ctx)
			*gen = nil
		}
		l.release(ctx, p)
	}
	for p := range want {
		l.claim(ctx, p)
	}
}

func (e *Executor) setOwned(ps []int) {
	e.mu.Lock()
	e.owned = ps
	e.mu.Unlock()
	e.log.Info().Ints("partitions", ps).Msg("transport partitions owned")
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// consumerName names the consumer of partition p for generation gen.
func (e *Executor) consumerName(p int, gen uint64) string {
	return fmt.Sprintf("%s_p%d_%s_g%d", e.c.cfg.Stream, p, e.id, gen)
}

// consumers replaces whatever consumer reads each partition of g (an ex-owner's,
// or this executor's from its previous generation) with a new durable one named for
// g, starting at the partition's first unacknowledged message. Deleting the old
// consumer fences its reader: acknowledgements sent on it no longer count. Each
// JetStream call has its own timeout; the leases are renewed meanwhile.
func (e *Executor) consumers(ctx context.Context, st jetstream.Stream, g *Generation) (map[int]jetstream.Consumer, error) {
	cctx, cancel := e.c.timeout(ctx)
	l := st.ListConsumers(cctx)
	stale := map[string][]string{}
	for info := range l.Info() {
		stale[info.Config.FilterSubject] = append(stale[info.Config.FilterSubject], info.Name)
	}
	err := l.Err()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	out := map[int]jetstream.Consumer{}
	for p := range g.epochs {
		if !g.valid() {
			return nil, errors.New("a lease lapsed while the consumers were replaced")
		}
		subject := Subject(e.c.cfg.SubjectPrefix, p)
		for _, name := range stale[subject] {
			cctx, cancel := e.c.timeout(ctx)
			err := st.DeleteConsumer(cctx, name)
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil, fmt.Errorf("delete consumer %s: %w", name, err)
			}
		}
		name := e.consumerName(p, g.id)
		cctx, cancel := e.c.timeout(ctx)
		c, err := st.CreateConsumer(cctx, jetstream.ConsumerConfig{
			Durable:       name,
			Description:   "fraiseql-observers partition " + subject + " for " + e.id,
			FilterSubject: subject,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       e.c.cfg.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: 4 * e.c.cfg.MaxPending,
			Replicas:      e.c.cfg.Replicas,
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create consumer %s: %w", name, err)
		}
		out[p] = c
	}
	return out, nil
}
