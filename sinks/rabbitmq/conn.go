package rabbitmq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/fraiseql/fraiseql-observers/internal/backoff"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Reconnect backoff after a failed connection attempt: doubling from
// reconnectInitial up to reconnectMax, with jitter.
const (
	reconnectInitial = 100 * time.Millisecond
	reconnectMax     = 10 * time.Second
)

// unroutableGrace is how long after a connection replaced a lost one a returned
// (unroutable) message is a transient failure rather than a permanent one. A
// RabbitMQ node restarted after a crash accepts connections before it has
// recovered every durable binding, and returns messages meanwhile (seen: a whole
// stream of 312 NO_ROUTE for a queue that was bound before and after); those are
// retried under the retry policy instead of going to the DLQ.
const unroutableGrace = 30 * time.Second

// recovering reports whether returned messages are transient now.
func (s *Sink) recovering() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Before(s.graceUntil)
}

// pubChannel is a confirm-mode channel used by one delivery at a time, so that its
// confirms and returns belong to that delivery alone.
type pubChannel struct {
	ch      *amqp.Channel
	closes  chan *amqp.Error
	returns chan amqp.Return
}

// closeErr returns the error the channel was closed with, if it was.
func (pc *pubChannel) closeErr() (*amqp.Error, bool) {
	select {
	case e, ok := <-pc.closes:
		if ok && e != nil {
			return e, true
		}
		return nil, true
	default:
		return nil, pc.ch.IsClosed()
	}
}

// channel returns an idle confirm channel, connecting first when there is no open
// connection. While a reconnection is backing off it fails at once with a transient
// error instead of waiting.
func (s *Sink) channel(ctx context.Context) (*pubChannel, error) {
	conn, pc, err := s.idleChannel(ctx)
	if pc != nil || err != nil {
		return pc, err
	}
	// Opening a channel is a round trip, so it is done without the lock. amqp091
	// cannot cancel it; a broker that stops answering is noticed by the heartbeat,
	// which fails it.
	ch, err := conn.Channel()
	if err != nil {
		return nil, classifyConnErr("open channel", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, classifyConnErr("confirm.select", err)
	}
	return &pubChannel{
		ch:      ch,
		closes:  ch.NotifyClose(make(chan *amqp.Error, 1)),
		returns: ch.NotifyReturn(make(chan amqp.Return, 64)),
	}, nil
}

// idleChannel returns an open idle channel, or the connection to open one on.
func (s *Sink) idleChannel(ctx context.Context) (*amqp.Connection, *pubChannel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, sinks.Transient("closed", errors.New("rabbitmq sink closed"), 0)
	}
	if err := s.connectLocked(ctx); err != nil {
		return nil, nil, err
	}
	for len(s.idle) > 0 {
		pc := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if _, closed := pc.closeErr(); !closed {
			return nil, pc, nil
		}
	}
	return s.conn, nil, nil
}

// release gives the channel back for reuse, or closes it when it is no longer
// clean (closed by the broker, or confirms or returns may still arrive).
func (s *Sink) release(pc *pubChannel, clean bool) {
	if _, closed := pc.closeErr(); closed {
		return
	}
	s.mu.Lock()
	if clean && !s.closed && s.conn != nil && !s.conn.IsClosed() {
		s.idle = append(s.idle, pc)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	pc.ch.Close()
}

// connectLocked makes sure s.conn is open, dialing when it is not and no backoff
// is pending. It is called with s.mu held, which it releases while dialing; other
// deliveries wait for that dial within their own deadline.
func (s *Sink) connectLocked(ctx context.Context) error {
	for s.dialing != nil {
		done := s.dialing
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			s.mu.Lock()
			return sinks.Transient("timeout", fmt.Errorf("wait for the rabbitmq connection: %w", ctx.Err()), 0)
		}
		s.mu.Lock()
	}
	if s.closed {
		return sinks.Transient("closed", errors.New("rabbitmq sink closed"), 0)
	}
	if s.conn != nil {
		select {
		case e := <-s.connCloses:
			s.dropLocked(e)
		default:
			if !s.conn.IsClosed() {
				return nil
			}
			s.dropLocked(nil)
		}
	}
	if wait := time.Until(s.nextDial); wait > 0 {
		return sinks.Transient("disconnected", fmt.Errorf("not connected to rabbitmq, next attempt in %v: %w",
			wait.Round(time.Millisecond), s.lastErr), 0)
	}
	timeout := s.cfg.Timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	done := make(chan struct{})
	s.dialing = done
	s.mu.Unlock()
	conn, err := s.dial(timeout)
	if err == nil && s.cfg.Declare != nil {
		err = s.declare(conn)
	}
	s.mu.Lock()
	s.dialing = nil
	close(done)
	if err == nil && s.closed {
		conn.Close()
		return sinks.Transient("closed", errors.New("rabbitmq sink closed"), 0)
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		s.failures++
		d := backoff.Exponential(s.failures, reconnectInitial, reconnectMax)
		s.nextDial = time.Now().Add(d)
		s.lastErr = err
		s.log.Warn().Err(err).Int("failures", s.failures).Dur("retry_in", d).Msg("rabbitmq connect failed")
		return classifyConnErr("rabbitmq dial", err)
	}
	if s.failures > 0 {
		s.log.Info().Int("failures", s.failures).Msg("rabbitmq reconnected")
	}
	if s.failures > 0 || s.lost {
		s.graceUntil = time.Now().Add(unroutableGrace)
	}
	s.failures, s.lastErr, s.nextDial, s.lost = 0, nil, time.Time{}, false
	s.conn = conn
	s.connCloses = conn.NotifyClose(make(chan *amqp.Error, 1))
	return nil
}

// dropLocked forgets a closed connection and its idle channels.
func (s *Sink) dropLocked(e *amqp.Error) {
	if e != nil {
		s.log.Warn().Int("code", e.Code).Str("reason", e.Reason).Msg("rabbitmq connection closed; reconnecting on the next delivery")
	}
	s.conn.Close()
	s.conn, s.connCloses, s.idle = nil, nil, nil
	s.lost = true
}

func (s *Sink) dial(timeout time.Duration) (*amqp.Connection, error) {
	var tc *tls.Config
	if s.tls != nil {
		tc = s.tls.Clone()
	}
	cfg := amqp.Config{
		Heartbeat:       10 * time.Second,
		Locale:          "en_US",
		TLSClientConfig: tc,
		Dial:            amqp.DefaultDial(max(timeout, 100*time.Millisecond)),
		Properties:      amqp.Table{"connection_name": "fraiseql-observers"},
	}
	conn, err := amqp.DialConfig(s.cfg.URL.Value(), cfg)
	if err != nil {
		return nil, redact(err, s.cfg.URL.Value())
	}
	return conn, nil
}

func (s *Sink) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("declare exchange: %w", err)
	}
	d := s.cfg.Declare
	if err := ch.ExchangeDeclare(d.Name, d.Kind, d.Durable, false, false, false, nil); err != nil {
		return &declareError{fmt.Errorf("declare exchange %s: %w", d.Name, err)}
	}
	return ch.Close()
}

type declareError struct{ err error }

func (e *declareError) Error() string { return e.err.Error() }
func (e *declareError) Unwrap() error { return e.err }

// classifyConnErr classifies a failure to connect or to open a channel.
func classifyConnErr(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	var de *declareError
	var ae *amqp.Error
	var ne net.Error
	switch {
	case errors.As(err, &de):
		return sinks.Transient("declare", err, 0)
	case errors.As(err, &ae) && ae.Code == amqp.AccessRefused:
		return sinks.Permanent("access_refused", err)
	case errors.As(err, &ne), errors.Is(err, amqp.ErrClosed):
		return sinks.Transient("connection_closed", err, 0)
	}
	return sinks.Transient("connect", err, 0)
}

// redact replaces the URL's password in an error message: amqp091 errors about the
// URL repeat it.
func redact(err error, rawURL string) error {
	pass := urlPassword(rawURL)
	if pass == "" || !strings.Contains(err.Error(), pass) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), pass, "xxxxx"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Unwrap keeps errors.Is and errors.As working; the cause's text is never shown.
func (e *redactedError) Unwrap() error { return e.err }
