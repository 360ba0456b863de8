// Package kafka is the kafka action: every event is produced as one record, keyed by
// its table and row key so that the events of one row land in one partition in commit
// order, with the event JSON as value and the event id in an `event-id` header.
//
// The producer is franz-go's idempotent producer with acks=all by default. A delivery
// returns nil once the broker acknowledged the record; every error is classified
// transient or permanent (see classify.go and docs/actions/kafka.md).
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Sink produces events to Kafka. It is safe for concurrent use. New connects to
// nothing and starts no goroutine: the client is created on the first delivery and
// closed by Close.
type Sink struct {
	cfg   Config
	opts  []kgo.Opt
	topic *eval.Template
	meta  eval.Meta

	mu     sync.Mutex
	cl     *kgo.Client
	adm    *kadm.Client
	closed bool

	limitsMu sync.Mutex
	limits   map[string]int // topic → max.message.bytes, learnt after a broker refusal
}

// New fills cfg's defaults, validates it and prepares the producer options.
// deps.Logger receives the producer client's warnings and errors (never record
// contents), and a warning at once with acks: leader.
func New(_ context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for key, sec := range map[string]configs.Secret{"brokers_env": cfg.BrokersEnv, "username": cfg.Username, "password_env": cfg.Password} {
		if !sec.Known() {
			return nil, sinks.KeyErrorf(key, errors.New("unknown: its environment variable is not set"))
		}
	}
	t, err := deps.Templates.Compile(cfg.Topic, eval.EscapeNone)
	if err != nil {
		return nil, sinks.KeyErrorf("topic", err)
	}
	cc, err := codec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.brokers()...),
		kgo.ProducerBatchCompression(cc),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxMessageBytes)),
		// A delivery is bounded by Timeout: records still in flight when it expires are
		// failed (and produced again by the pipeline's retry, with the same event id).
		kgo.AllowIdempotentProduceCancellation(),
		kgo.RecordDeliveryTimeout(cfg.Timeout),
		kgo.ProduceRequestTimeout(cfg.Timeout),
		kgo.DialTimeout(min(cfg.Timeout, DefaultTimeout)),
		kgo.WithLogger(logger{deps.Logger}),
	}
	if cfg.Acks == AcksLeader {
		deps.Logger.Warn().Msg("kafka acks: leader; an acknowledged event is lost if the partition leader fails before followers copy it")
		// franz-go's idempotent producer requires acks=all.
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	} else {
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, sinks.KeyErrorf("tls", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch cfg.SASLMechanism {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.Username.Value(), Pass: cfg.Password.Value()}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.Username.Value(), Pass: cfg.Password.Value()}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.Username.Value(), Pass: cfg.Password.Value()}.AsSha512Mechanism()))
	}
	return &Sink{cfg: cfg, opts: opts, topic: t, meta: deps.Templates.Meta, limits: map[string]int{}}, nil
}

// client returns the producer, creating it on first use.
func (s *Sink) client() (*kgo.Client, *kadm.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, sinks.Transient("closed", errors.New("kafka sink closed"), 0)
	}
	if s.cl == nil {
		cl, err := kgo.NewClient(s.opts...)
		if err != nil {
			return nil, nil, sinks.Permanent("config", fmt.Errorf("create kafka client: %w", err))
		}
		s.cl, s.adm = cl, kadm.NewClient(cl)
	}
	return s.cl, s.adm, nil
}

// Deliver produces one event and waits for the broker's acknowledgement.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	errs := []error{nil}
	s.DeliverBatch(ctx, []*decoder.Event{ev}, errs)
	return errs[0]
}

// DeliverBatch produces the events together and sets errs[i] to the outcome for
// evs[i]. It returns when every record is acknowledged or failed, within the
// configured timeout.
func (s *Sink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	cl, adm, err := s.client()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return
	}
	recs := make([]*kgo.Record, 0, len(evs))
	index := make(map[*kgo.Record]int, len(evs))
	for i, ev := range evs {
		r, err := s.record(ev)
		if err != nil {
			errs[i] = err
			continue
		}
		recs = append(recs, r)
		index[r] = i
	}
	if len(recs) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	for _, res := range cl.ProduceSync(pctx, recs...) {
		i := index[res.Record]
		if res.Err == nil {
			errs[i] = nil
			continue
		}
		errs[i] = s.classify(ctx, adm, res.Record, res.Err)
	}
}

// Close closes the producer, failing records still buffered (their deliveries
// return transient errors). It does not wait for them to be acknowledged.
func (s *Sink) Close() error {
	s.mu.Lock()
	cl := s.cl
	s.closed = true
	s.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	return nil
}
