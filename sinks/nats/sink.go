package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// StallWait is how long an asynchronous publish waits for room when MaxPending
// publishes already wait for their PubAck.
const StallWait = 200 * time.Millisecond

// Sink publishes events to JetStream. It is safe for concurrent use.
type Sink struct {
	cfg        Config
	tmpl       *eval.Template
	meta       eval.Meta
	nc         *natsio.Conn
	js         jetstream.JetStream
	log        zerolog.Logger
	duplicates *metrics.Counter
}

// New fills cfg's defaults, validates it, connects (bounded by the dial timeout)
// and, when cfg.Stream is set, checks the stream (bounded by ctx and the timeout).
// Unlike most sinks' New it does I/O, and the NATS client starts its reader,
// flusher and callback goroutines, which reconnect on their own (forever) when
// the connection drops; Close stops them. A server that cannot be reached,
// refused credentials or a missing stream are errors. deps.Logger receives
// connection events (disconnected, reconnected, asynchronous errors);
// deps.Metrics receives observer_nats_duplicates_total{action="..."}.
func New(ctx context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := deps.Templates.Compile(cfg.Subject, eval.EscapeNone)
	if err != nil {
		return nil, keyErr("subject", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.Timeout+time.Second)
	defer cancel()
	log := deps.Logger
	nc, err := cfg.Connection().Dial(log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.Timeout),
		jetstream.WithPublishAsyncMaxPending(MaxPending), jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s := &Sink{cfg: cfg, tmpl: t, meta: deps.Templates.Meta, nc: nc, js: js, log: log,
		duplicates: deps.MetricSet().GetOrCreateCounter(`observer_nats_duplicates_total{action=` + strconv.Quote(deps.ActionID) + `}`)}
	if cfg.Stream != "" {
		if err := s.checkStream(ctx); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return s, nil
}

// checkStream checks that the configured stream exists and, for a subject without
// placeholders, that one of its subjects covers it.
func (s *Sink) checkStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return keyErr("stream", fmt.Errorf("stream %q does not exist; create it (subjects covering %q) or remove the key", s.cfg.Stream, s.cfg.Subject))
	}
	if err != nil {
		return fmt.Errorf("look up stream %q: %w", s.cfg.Stream, err)
	}
	if !s.tmpl.Static() {
		return nil
	}
	subjects := st.CachedInfo().Config.Subjects
	for _, f := range subjects {
		if subjectMatches(f, s.cfg.Subject) {
			return nil
		}
	}
	return keyErr("subject", fmt.Errorf("stream %q does not capture subject %q (its subjects: %v)", s.cfg.Stream, s.cfg.Subject, subjects))
}

// msg builds the message of ev: its JSON, with Nats-Msg-Id (and Nats-Expected-Stream
// when a stream is configured).
func (s *Sink) msg(ev *decoder.Event) (*natsio.Msg, error) {
	subject := s.cfg.Subject
	if !s.tmpl.Static() {
		var err error
		if subject, err = s.tmpl.Render(eval.NewEnv(ev, s.meta)); err != nil {
			return nil, sinks.Permanent("template", fmt.Errorf("render subject: %w", err))
		}
		if err := CheckSubject(subject); err != nil {
			return nil, sinks.Permanent("bad_subject", err)
		}
	}
	m := &natsio.Msg{Subject: subject, Data: ev.JSON(), Header: natsio.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, ev.ID.String())
	if s.cfg.Stream != "" {
		m.Header.Set(jetstream.ExpectedStreamHeader, s.cfg.Stream)
	}
	return m, nil
}

// Deliver publishes the event and waits, at most the configured timeout, for its
// PubAck. A PubAck with duplicate=true (the stream already holds this event id)
// counts as delivered.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	m, err := s.msg(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return Classify(fmt.Errorf("publish: %w", err))
	}
	s.acked(ack)
	return nil
}

func (s *Sink) acked(ack *jetstream.PubAck) {
	if ack.Duplicate {
		s.duplicates.Inc()
	}
}

// DeliverBatch publishes the events asynchronously, then waits for every PubAck and
// sets errs[i] from the outcome of evs[i]. Each PubAck is awaited at most the
// configured timeout after its publish (a few times that if the stream has no
// responder and the client retries).
func (s *Sink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	futs := make([]jetstream.PubAckFuture, len(evs))
	for i, ev := range evs {
		m, err := s.msg(ev)
		if err != nil {
			errs[i] = err
			continue
		}
		f, err := s.js.PublishMsgAsync(m, jetstream.WithStallWait(StallWait))
		if err != nil {
			errs[i] = Classify(fmt.Errorf("publish: %w", err))
			continue
		}
		futs[i] = f
	}
	// The library times each PubAck out by itself; this bound only guards against a
	// future that never resolves.
	bound := time.NewTimer(4*s.cfg.Timeout + time.Second)
	defer bound.Stop()
	dups := 0
	for i, f := range futs {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			errs[i] = nil
			if ack.Duplicate {
				dups++
			}
			s.acked(ack)
		case err := <-f.Err():
			errs[i] = Classify(fmt.Errorf("publish: %w", err))
		case <-ctx.Done():
			errs[i] = ctx.Err()
		case <-bound.C:
			errs[i] = sinks.Transient("timeout", errors.New("no PubAck and no error from the client"), 0)
			bound.Reset(0)
		}
	}
	s.log.Debug().Int("events", len(evs)).Int("duplicates", dups).Msg("nats batch published")
}

// Close closes the connection, which stops the client's goroutines. The pipeline
// calls it after the last delivery has returned, so nothing is left to flush.
func (s *Sink) Close() error {
	s.js.CleanupPublisher()
	s.nc.Close()
	return nil
}
