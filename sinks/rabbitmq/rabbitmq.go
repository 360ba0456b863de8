// Package rabbitmq is the rabbitmq action: every event is published as one
// persistent AMQP 0-9-1 message (body = the event JSON, message id = the event id)
// on a channel in publisher-confirm mode, and a delivery succeeds only once the
// broker confirmed it. Unroutable messages are returned (mandatory) and fail the
// delivery. Errors are classified transient or permanent (docs/actions/rabbitmq.md).
package rabbitmq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Header names set on every message besides the message id.
const (
	HeaderTable = "table" // "schema.table" ("" for a logical message)
	HeaderOp    = "op"    // INSERT, UPDATE, DELETE, TRUNCATE, MESSAGE
)

// Sink publishes events to RabbitMQ. It is safe for concurrent use: each delivery
// uses a confirm channel of its own (channels are pooled). New connects to nothing
// and starts no goroutine; the connection is opened by the first delivery, reopened
// by a later delivery after it closed, and closed by Close.
type Sink struct {
	cfg        Config
	log        zerolog.Logger
	meta       eval.Meta
	exchange   *eval.Template
	routingKey *eval.Template
	tls        *tls.Config

	mu         sync.Mutex
	conn       *amqp.Connection
	connCloses chan *amqp.Error
	idle       []*pubChannel
	dialing    chan struct{} // closed when the dial in progress ends; nil when none
	failures   int           // failed connection attempts in a row
	nextDial   time.Time     // no new attempt before this
	lastErr    error
	closed     bool
	lost       bool      // the open connection was lost since the last one opened (failed dials count in failures)
	graceUntil time.Time // returns are transient before this: the broker may still be recovering
}

// New fills cfg's defaults, validates it and prepares the sink. deps.Logger
// receives connection losses and reconnections (never message bodies or the
// URL's password).
func New(_ context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.URL.Known() {
		return nil, sinks.KeyErrorf("url", errors.New("unknown: its environment variable is not set"))
	}
	s := &Sink{cfg: cfg, log: deps.Logger, meta: deps.Templates.Meta}
	var err error
	if s.exchange, err = deps.Templates.Compile(cfg.Exchange, eval.EscapeNone); err != nil {
		return nil, sinks.KeyErrorf("exchange", err)
	}
	if s.routingKey, err = deps.Templates.Compile(cfg.RoutingKey, eval.EscapeNone); err != nil {
		return nil, sinks.KeyErrorf("routing_key", err)
	}
	if strings.HasPrefix(cfg.URL.Value(), "amqps:") {
		files := sinks.TLSFiles{}
		if cfg.TLS != nil {
			files = *cfg.TLS
		}
		if s.tls, err = files.Config(); err != nil {
			return nil, sinks.KeyErrorf("tls", err)
		}
		if s.tls.ServerName == "" {
			u, _ := url.Parse(cfg.URL.Value())
			s.tls.ServerName = u.Hostname()
		}
	}
	return s, nil
}

// message is one event ready to publish.
type message struct {
	i        int // index in the delivery's events
	exchange string
	key      string
	pub      amqp.Publishing
}

func (s *Sink) message(ev *decoder.Event) (message, error) {
	env := eval.NewEnv(ev, s.meta)
	m := message{exchange: s.cfg.Exchange, key: s.cfg.RoutingKey}
	var err error
	if !s.exchange.Static() {
		if m.exchange, err = s.exchange.Render(env); err != nil {
			return m, sinks.Permanent("template", fmt.Errorf("render exchange: %w", err))
		}
	}
	if !s.routingKey.Static() {
		if m.key, err = s.routingKey.Render(env); err != nil {
			return m, sinks.Permanent("template", fmt.Errorf("render routing_key: %w", err))
		}
	}
	if len(m.exchange) > 255 || len(m.key) > 255 {
		return m, sinks.Permanent("invalid_name", errors.New("rendered exchange or routing key longer than 255 bytes"))
	}
	body := ev.JSON()
	if len(body) > int(s.cfg.MaxMessageBytes) {
		return m, sinks.Permanent("too_large", fmt.Errorf("message of %d bytes exceeds max_message_bytes (%d)", len(body), s.cfg.MaxMessageBytes))
	}
	table := ""
	if ev.Table != "" {
		table = ev.Schema + "." + ev.Table
	}
	m.pub = amqp.Publishing{
		MessageId:    ev.ID.String(),
		DeliveryMode: amqp.Persistent,
		ContentType:  "application/json",
		Headers:      amqp.Table{HeaderTable: table, HeaderOp: ev.Op.String()},
		Body:         body,
	}
	return m, nil
}

// Deliver publishes one event and waits for its confirm.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	errs := []error{nil}
	s.DeliverBatch(ctx, []*decoder.Event{ev}, errs)
	return errs[0]
}

// DeliverBatch publishes the events on one channel, then waits for all their
// confirms, and sets errs[i] to the outcome for evs[i]. It returns within the
// configured timeout.
func (s *Sink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ms := make([]message, 0, len(evs))
	for i, ev := range evs {
		m, err := s.message(ev)
		if err != nil {
			errs[i] = err
			continue
		}
		m.i = i
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return
	}
	out := make([]error, len(ms))
	soft := s.publish(ctx, ms, out)
	if soft != nil {
		// The broker closed the channel for one message (a missing exchange, a
		// message over max_message_size): every unconfirmed message of the batch
		// failed with it. Publish those again one by one to find out which.
		for j := range ms {
			if out[j] != nil && errors.Is(out[j], errSoftClose) {
				one := []error{nil}
				s.publish(ctx, ms[j:j+1], one)
				out[j] = one[0]
			}
		}
	}
	for j, m := range ms {
		errs[m.i] = out[j]
		if out[j] != nil && parent.Err() != nil {
			errs[m.i] = fmt.Errorf("publish: %w", parent.Err())
		}
	}
}

// errSoftClose marks messages that were unconfirmed when a channel exception closed
// their channel and that shared it with other unconfirmed messages.
var errSoftClose = errors.New("channel closed by a channel exception")

// publish publishes ms on one channel and waits for their confirms, setting out[j]
// for ms[j]. When a channel exception closed the channel and more than one message
// was unconfirmed then, it returns that exception and marks those messages with
// errSoftClose (wrapped in a transient error).
func (s *Sink) publish(ctx context.Context, ms []message, out []error) *amqp.Error {
	pc, err := s.channel(ctx)
	if err != nil {
		for j := range out {
			out[j] = err
		}
		return nil
	}
	dcs := make([]*amqp.DeferredConfirmation, len(ms))
	for j, m := range ms {
		dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, m.exchange, m.key, !s.cfg.AllowUnroutable(), false, m.pub)
		if err != nil {
			for k := j; k < len(ms); k++ {
				out[k] = classifyPublishErr(err)
			}
			break
		}
		dcs[j] = dc
	}
	returned := map[string]amqp.Return{}
	returns := pc.returns // nil once amqp091 closed it (channel closed)
	clean := true
	for j, dc := range dcs {
		if dc == nil {
			continue
		}
	wait:
		for {
			select {
			case <-dc.Done():
				break wait
			case r, ok := <-returns:
				if !ok {
					returns = nil
					continue
				}
				returned[r.MessageId] = r
			case <-ctx.Done():
				out[j] = sinks.Transient("timeout", fmt.Errorf("no publisher confirm within %v: %w", s.cfg.Timeout, ctx.Err()), 0)
				clean = false
				break wait
			}
		}
	}
	// A basic.return comes before the ack of its message: all are here now.
	for returns != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			returned[r.MessageId] = r
		default:
			returns = nil
		}
	}
	closeErr, closed := pc.closeErr()
	unconfirmed := 0
	for j, dc := range dcs {
		if dc != nil && out[j] == nil && !dc.Acked() {
			unconfirmed++
		}
	}
	var soft *amqp.Error
	for j, dc := range dcs {
		if dc == nil || out[j] != nil {
			continue
		}
		if r, ok := returned[ms[j].pub.MessageId]; ok {
			err := fmt.Errorf("message returned by the broker: %d %s (no queue bound for routing key; set mandatory: false to drop such messages)",
				r.ReplyCode, r.ReplyText)
			if s.recovering() {
				out[j] = sinks.Transient("unroutable", fmt.Errorf("%w; retried: the connection reopened less than %v ago and the broker may still be recovering its bindings", err, unroutableGrace), 0)
			} else {
				out[j] = sinks.Permanent("unroutable", err)
			}
			continue
		}
		if dc.Acked() {
			continue
		}
		switch {
		case closeErr != nil && isSoft(closeErr) && unconfirmed > 1:
			soft = closeErr
			out[j] = sinks.Transient("channel_closed", fmt.Errorf("publish: %w: %w", errSoftClose, closeErr), 0)
		case closeErr != nil:
			out[j] = classifyClose(closeErr)
		case closed:
			out[j] = sinks.Transient("connection_closed", errors.New("publish: channel closed before the confirm"), 0)
		default:
			out[j] = sinks.Transient("nack", errors.New("publish: the broker nacked the message"), 0)
		}
	}
	s.release(pc, clean)
	return soft
}

// isSoft reports whether e is a channel exception about one publish.
func isSoft(e *amqp.Error) bool {
	if !e.Server {
		return false
	}
	switch e.Code {
	case amqp.NotFound, amqp.AccessRefused, amqp.PreconditionFailed:
		return true
	}
	return false
}

// classifyClose classifies the exception that closed a channel with a message
// unconfirmed on it.
func classifyClose(e *amqp.Error) error {
	err := fmt.Errorf("publish: %w", e)
	switch e.Code {
	case amqp.NotFound:
		if !e.Server {
			break
		}
		// The exchange does not exist; an operator (or declare) can create it.
		return sinks.Transient("not_found", err, 0)
	case amqp.AccessRefused:
		return sinks.Permanent("access_refused", err)
	case amqp.PreconditionFailed:
		if !e.Server {
			break
		}
		// RabbitMQ refuses a publish with PRECONDITION_FAILED when the message is
		// over max_message_size.
		return sinks.Permanent("too_large", err)
	case amqp.FrameError:
		if e.Server { // the broker refused a frame; amqp091 reports a broken socket read as 501 too
			return sinks.Permanent("too_large", err)
		}
	}
	return sinks.Transient("connection_closed", err, 0)
}

func classifyPublishErr(err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) && ae != nil {
		return classifyClose(ae)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return sinks.Transient("timeout", fmt.Errorf("publish: %w", err), 0)
	}
	return sinks.Transient("connection_closed", fmt.Errorf("publish: %w", err), 0)
}

// Close closes the connection; deliveries still waiting for confirms fail with
// transient errors.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.idle = nil
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if errors.Is(err, amqp.ErrClosed) {
		err = nil
	}
	return err
}

func urlPassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}
