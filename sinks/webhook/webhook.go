// Package webhook is the webhook action: each event is sent as an HTTP request
// (by default a POST of the event JSON) to a configured URL, with the stable event
// id as Idempotency-Key, an optional HMAC signature (the original system's
// X-FraiseQL-Signature-256 or Standard Webhooks), optional batching of events into
// a JSON array, and every connection checked by the egress guard. See
// docs/actions/webhook.md.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

// HeaderIdempotencyKey carries the event id (or the batch id) on every request.
const HeaderIdempotencyKey = "Idempotency-Key"

// Sink sends events to a webhook. It is safe for concurrent use; Deliver and
// DeliverBatch block until the receiver answered, the attempt's timeout passed or
// ctx is done.
type Sink struct {
	cfg    Config
	url    *url.URL
	header http.Header // static headers, canonical names
	body   *eval.Template
	signer *signer
	client *http.Client
	meta   eval.Meta
	now    func() time.Time
}

// New fills cfg's defaults, validates it and returns a sink. It connects to
// nothing and starts no goroutine; connections are opened by deliveries and
// closed by Close. deps.Logger receives one debug line (target host, method,
// header names with secret-looking values redacted); deps.Metrics receives
// observer_egress_blocked_total{action_type="webhook"}; deps.TLS, if set, is used
// for https targets; deps.Now gives signature timestamps.
func New(_ context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.URL.Known() {
		return nil, sinks.KeyErrorf("url", errors.New("the URL is unknown: its environment variable is not set"))
	}
	u, err := url.Parse(cfg.URL.Value())
	if err != nil {
		return nil, sinks.KeyErrorf("url", errors.New("invalid URL"))
	}
	guard, err := egress.New(egress.Options{Policy: cfg.Policy, ActionType: "webhook", Metrics: deps.Metrics, Resolver: deps.Resolver})
	if err != nil {
		return nil, sinks.KeyErrorf("allowed_hosts", err)
	}
	s := &Sink{
		cfg:    cfg,
		url:    u,
		header: http.Header{},
		client: guard.Client(egress.ClientOptions{FollowRedirects: cfg.FollowRedirects, TLSConfig: deps.TLS}),
		meta:   deps.Templates.Meta,
		now:    deps.Clock(),
	}
	s.header.Set("Content-Type", "application/json")
	s.header.Set("User-Agent", "fraiseql-observers")
	for n, v := range cfg.Headers {
		s.header.Set(n, v)
	}
	if cfg.BodyTemplate != "" {
		if s.body, err = deps.Templates.Compile(cfg.BodyTemplate, eval.EscapeJSON); err != nil {
			return nil, sinks.KeyErrorf("body_template", err)
		}
	}
	if secrets := cfg.secrets(); len(secrets) > 0 {
		keys, err := signingKeys(cfg.SignatureFormat, secrets)
		if err != nil {
			return nil, sinks.KeyErrorf("signing_secret", err)
		}
		if len(keys) < len(secrets) {
			return nil, sinks.KeyErrorf("signing_secret", errors.New("a signing secret is unknown: its environment variable is not set"))
		}
		s.signer = &signer{format: cfg.SignatureFormat, keys: keys}
	}
	deps.Logger.Debug().Str("target", egress.RedactURL(u)).Str("method", cfg.Method).
		Interface("headers", cfg.RedactedHeaders()).Bool("signed", s.signer != nil).
		Str("signature_format", cfg.SignatureFormat).Int("batch_size", cfg.BatchSize).
		Msg("webhook action ready")
	return s, nil
}

// BatchSize returns the configured batch_size (1: one event per request).
func (s *Sink) BatchSize() int { return s.cfg.BatchSize }

// Deliver sends one event. With batch_size > 1 the body is a JSON array holding
// the one event, so that receivers see one shape.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	if s.cfg.BatchSize > 1 {
		errs := []error{nil}
		s.DeliverBatch(ctx, []*decoder.Event{ev}, errs)
		return errs[0]
	}
	body, err := s.render(nil, ev)
	if err != nil {
		return err
	}
	return s.send(ctx, body, ev.ID.String())
}

// DeliverBatch sends the events in requests of at most batch_size events each, one
// request after another (the pipeline hands it at most batch_size events, so
// usually one request); errs[i] receives the outcome of evs[i]. The result of a
// request applies to all of its events. An event whose body template fails gets
// its own permanent error and is left out of the request.
func (s *Sink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	n := s.cfg.BatchSize
	for start := 0; start < len(evs); start += n {
		end := min(start+n, len(evs))
		if n == 1 {
			errs[start] = s.Deliver(ctx, evs[start])
			continue
		}
		s.deliverArray(ctx, evs[start:end], errs[start:end])
	}
}

func (s *Sink) deliverArray(ctx context.Context, evs []*decoder.Event, errs []error) {
	buf := make([]byte, 0, 1024*len(evs))
	buf = append(buf, '[')
	sent := make([]int, 0, len(evs))
	for i, ev := range evs {
		mark := len(buf)
		if len(sent) > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = s.render(buf, ev); err != nil {
			buf = buf[:mark]
			errs[i] = err
			continue
		}
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return
	}
	buf = append(buf, ']')
	err := s.send(ctx, buf, batchID(evs, sent))
	for _, i := range sent {
		errs[i] = err
	}
}

// batchID is the message id of a request carrying the events evs[sent]: the event
// id when there is one event, else "batch_" and 32 hex digits of the SHA-256 of the
// sorted event ids, so the same set of events always gets the same id.
func batchID(evs []*decoder.Event, sent []int) string {
	if len(sent) == 1 {
		return evs[sent[0]].ID.String()
	}
	ids := make([]string, len(sent))
	pos := make([]int, len(sent))
	copy(pos, sent)
	slices.SortFunc(pos, func(a, b int) int { return evs[a].ID.Compare(evs[b].ID) })
	for i, p := range pos {
		ids[i] = evs[p].ID.String()
	}
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return "batch_" + hex.EncodeToString(sum[:16])
}

// render appends the body of ev to buf. Without a template and buf, it returns the
// event's shared JSON without copying it.
func (s *Sink) render(buf []byte, ev *decoder.Event) ([]byte, error) {
	if s.body == nil {
		if buf == nil {
			return ev.JSON(), nil
		}
		return append(buf, ev.JSON()...), nil
	}
	out, err := s.body.RenderJSON(buf, eval.NewEnv(ev, s.meta))
	if err != nil {
		return buf, sinks.Permanent("template", fmt.Errorf("render body_template: %w", err))
	}
	return out, nil
}

// send makes one attempt: the request with its id and signature, bounded by the
// configured timeout, and the classification of its outcome.
func (s *Sink) send(ctx context.Context, body []byte, id string) error {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, s.cfg.Method, s.cfg.URL.Value(), bytes.NewReader(body))
	if err != nil {
		return sinks.Permanent("request", fmt.Errorf("build %s request to %s", s.cfg.Method, egress.RedactURL(s.url)))
	}
	req.Header = s.header.Clone()
	req.Header.Set(HeaderIdempotencyKey, id)
	if s.signer != nil {
		s.signer.sign(req.Header, id, s.now().Unix(), body)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		err = egress.TransportError(ctx, s.cfg.Method, s.url, err)
		if sinks.Class(err) == "timeout" {
			err = fmt.Errorf("%w (timeout %s)", err, s.cfg.Timeout)
		}
		return err
	}
	egress.Drain(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return fmt.Errorf("%s %s: %w", s.cfg.Method, egress.RedactURL(s.url), egress.StatusError(resp, s.now(), ""))
}

// Close closes idle connections. Deliveries must have returned.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
