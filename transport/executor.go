package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/internal/backoff"
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
	// with g.Fence; it must not skip events by checkpoint (Options.Start) nor use
	// the pipeline's Dedup, whose LSN-ordering rule drops ids below those already
	// settled, since partitions interleave ids (Positions deduplicates per
	// partition instead), nor its RowCache (the reader fills the events). Its Run
	// closes the sinks, so each call builds new ones.
	NewPipeline func(g *Generation) (*pipeline.Pipeline, error)
	// Positions keeps each partition's settled position, so that events at or
	// below it are not delivered again, whichever executor serves the partition
	// (nil: no deduplication; see Positions).
	Positions Positions
	// PositionsInterval is how often a generation saves the settled positions of
	// its partitions (default 1s); it also saves them when it stops.
	PositionsInterval time.Duration
	Logger            zerolog.Logger
	// Metrics receives the executor's metrics (observer_transport_*, docs/metrics.md);
	// nil keeps them in a private set that nothing exports.
	Metrics *metrics.Set
	// BacklogInterval is how often the executor reads the pending and ack-pending
	// counts of the consumers of the partitions it owns for the backlog metrics
	// (default 5s).
	BacklogInterval time.Duration
}

// DefaultBacklogInterval is how often backlogs are read by default.
const DefaultBacklogInterval = 5 * time.Second

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

	gens        atomic.Uint64
	retryGen    uint64         // the generation that failed to start, tried again under its number
	retryEpochs map[int]uint64 // its partitions
	members     []string       // live executors as last read (Run's goroutine only)
	m           executorMetrics
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
	if opts.BacklogInterval <= 0 {
		opts.BacklogInterval = DefaultBacklogInterval
	}
	if opts.PositionsInterval <= 0 {
		opts.PositionsInterval = time.Second
	}
	e := &Executor{c: c, opts: opts, id: id, log: opts.Logger.With().Str("executor", id).Logger()}
	e.m = newExecutorMetrics(opts.Metrics, e.Owned)
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
	var kvs jetstream.Stream
	for {
		var err error
		cctx, cancel := e.c.timeout(ctx)
		kv, err = e.c.ownersKV(cctx)
		if err == nil {
			kvs, err = e.c.ownersStream(cctx)
		}
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
		if err := leave(sctx, kvs, e.c.OwnersBucket(), e.id); err != nil {
			e.log.Debug().Err(err).Msg("transport leave failed")
		}
		e.setOwned(nil)
	}()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		e.step(ctx, kvs, l, &gen)
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
			e.m.rebalances.Inc()
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

// step reads the live executors, releases what another executor should own and
// claims what this one should. A partition is released only after the generation serving it
// stopped.
func (e *Executor) step(ctx context.Context, kvs jetstream.Stream, l *leases, gen **Generation) {
	cctx, cancel := e.c.timeout(ctx)
	ms, err := members(cctx, kvs, e.c.OwnersBucket())
	cancel()
	if err != nil {
		// Keep to the last known members: guessing (alone, say) would move
		// partitions back and forth for nothing.
		e.log.Warn().Err(err).Msg("transport members unknown; keeping the last known")
		ms = e.members
	}
	if !contains(ms, e.id) {
		ms = append(ms, e.id)
	}
	e.members = ms
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
// or this executor's from an earlier generation) with a new durable one named for
// g, starting at the partition's first unacknowledged message. Deleting the old
// consumer fences its reader: acknowledgements sent on it no longer count.
//
// The consumers are found by name (CONSUMER.NAMES, which the meta leader answers
// from its assignments) rather than listed with their state (CONSUMER.LIST, which
// asks every consumer's leader and waits for all of them: after a node loss it
// times out while any consumer of the stream is still electing a leader). Each
// JetStream call has its own timeout and is retried, with the same consumer name,
// while g's partitions are still claimed: after a node loss a new consumer may
// answer only once its group elected a leader, later than one call's timeout.
func (e *Executor) consumers(ctx context.Context, st jetstream.Stream, g *Generation) (map[int]jetstream.Consumer, error) {
	var names []string
	err := e.retry(ctx, g, func(cctx context.Context) error {
		names = names[:0]
		l := st.ConsumerNames(cctx)
		for n := range l.Name() {
			names = append(names, n)
		}
		return l.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list consumer names: %w", err)
	}
	stale := map[int][]string{}
	for _, n := range names {
		if p, ok := e.partitionOfConsumer(n); ok {
			stale[p] = append(stale[p], n)
		}
	}
	var (
		mu    sync.Mutex
		out   = map[int]jetstream.Consumer{}
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, maxConcurrentCalls)
	)
	for p := range g.epochs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := e.replaceConsumer(ctx, st, g, p, stale[p])
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			out[p] = c
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

// maxConcurrentCalls bounds the JetStream calls made at once when a generation's
// consumers are replaced.
const maxConcurrentCalls = 8

// replaceConsumer deletes the consumers named in stale (but g's own, from an
// earlier try) and creates g's consumer of partition p.
func (e *Executor) replaceConsumer(ctx context.Context, st jetstream.Stream, g *Generation, p int, stale []string) (jetstream.Consumer, error) {
	name := e.consumerName(p, g.id)
	for _, old := range stale {
		if old == name { // created by an earlier try of this generation
			continue
		}
		err := e.retry(ctx, g, func(cctx context.Context) error {
			err := st.DeleteConsumer(cctx, old)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("delete consumer %s: %w", old, err)
		}
	}
	subject := Subject(e.c.cfg.SubjectPrefix, p)
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "fraiseql-observers partition " + subject + " for " + e.id,
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.c.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * e.c.cfg.MaxPending,
		Replicas:      e.c.cfg.Replicas,
	}
	var c jetstream.Consumer
	err := e.retry(ctx, g, func(cctx context.Context) error {
		var err error
		c, err = st.CreateConsumer(cctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	return c, nil
}

// retry calls op, each call with its own timeout, until it succeeds, ctx ends,
// g's partitions are no longer all claimed under g's epochs or lease_ttl passed
// (the caller tries again at its next step); it returns op's last error then.
func (e *Executor) retry(ctx context.Context, g *Generation, op func(ctx context.Context) error) error {
	deadline := time.Now().Add(max(e.c.cfg.LeaseTTL, 2*(e.c.cfg.Timeout+time.Second)))
	for attempt := 1; ; attempt++ {
		cctx, cancel := e.c.timeout(ctx)
		err := op(cctx)
		cancel()
		switch {
		case err == nil:
			return nil
		case !g.leases.claimed(g.epochs):
			return fmt.Errorf("%w (a partition is no longer claimed)", err)
		case time.Now().After(deadline):
			return err
		}
		e.log.Debug().Err(err).Int("attempt", attempt).Msg("transport call failed; retrying")
		if !sleep(ctx, backoff.Exponential(attempt, 100*time.Millisecond, 2*time.Second)) {
			return err
		}
	}
}

// partitionOfConsumer returns the partition a consumer named by consumerName
// reads, and false for any other name.
func (e *Executor) partitionOfConsumer(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, e.c.cfg.Stream+"_p")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "_")
	if !ok {
		return 0, false
	}
	p, err := strconv.Atoi(digits)
	return p, err == nil && p >= 0 && p < e.c.cfg.Partitions
}

// pullExpiry is how long a pull request waits at the consumer's leader: the
// transport timeout, at least a second.
func (e *Executor) pullExpiry() time.Duration {
	return max(e.c.cfg.Timeout, time.Second)
}
