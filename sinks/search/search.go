// Package search is the search action: rows are indexed into Elasticsearch or
// OpenSearch through the _bulk API (NDJSON), one bulk request per batch, with a
// per-item outcome: INSERT and UPDATE index the new row as the document, DELETE
// deletes it (a document already gone counts as deleted), TRUNCATE is refused.
// Connections go through the egress guard. See docs/actions/search.md.
package search

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

// filterPath trims the bulk response to what the sink reads. status is present in
// every item, so no item is filtered out and positions still match the request.
const filterPath = "errors,items.*.status,items.*.result,items.*.error.type"

// Sink indexes events. It is safe for concurrent use; Deliver and DeliverBatch
// block until the cluster answered, the timeout passed or ctx is done.
type Sink struct {
	cfg     Config
	url     *url.URL
	bulkURL string
	auth    string // Authorization header value, or ""
	index   *eval.Template
	id      *eval.Template
	client  *http.Client
	meta    eval.Meta
}

// New fills cfg's defaults, validates it and returns a sink. It connects to
// nothing and starts no goroutine. deps.Logger receives one debug line (host and
// index only); deps.Metrics receives observer_egress_blocked_total{action_type="search"};
// deps.TLS, if set, is used for https clusters.
func New(_ context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, sec := range []struct {
		key string
		s   configs.Secret
	}{{"url", cfg.URL}, {"username_env", cfg.Username}, {"password_env", cfg.Password}, {"api_key_env", cfg.APIKey}} {
		if !sec.s.Known() {
			return nil, sinks.KeyErrorf(sec.key, errors.New("unknown: its environment variable is not set"))
		}
	}
	u, err := url.Parse(cfg.URL.Value())
	if err != nil {
		return nil, sinks.KeyErrorf("url", errors.New("invalid URL"))
	}
	guard, err := egress.New(egress.Options{Policy: cfg.Policy, ActionType: "search", Metrics: deps.Metrics, Resolver: deps.Resolver})
	if err != nil {
		return nil, sinks.KeyErrorf("allowed_hosts", err)
	}
	bu := *u
	bu.Path = strings.TrimSuffix(u.Path, "/") + "/_bulk"
	bu.RawPath = ""
	bu.RawQuery = url.Values{"filter_path": {filterPath}}.Encode()
	s := &Sink{
		cfg:     cfg,
		url:     u,
		bulkURL: bu.String(),
		client:  guard.Client(egress.ClientOptions{TLSConfig: deps.TLS}),
		meta:    deps.Templates.Meta,
	}
	switch {
	case cfg.APIKey.IsSet():
		s.auth = "ApiKey " + cfg.APIKey.Value()
	case cfg.Username.IsSet():
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(cfg.Username.Value(), cfg.Password.Value())
		s.auth = r.Header.Get("Authorization")
	}
	if s.index, err = deps.Templates.Compile(cfg.Index, eval.EscapeNone); err != nil {
		return nil, sinks.KeyErrorf("index", err)
	}
	if cfg.IDTemplate != "" {
		if s.id, err = deps.Templates.Compile(cfg.IDTemplate, eval.EscapeNone); err != nil {
			return nil, sinks.KeyErrorf("id_template", err)
		}
	}
	deps.Logger.Debug().Str("target", egress.RedactURL(u)).Str("index", cfg.Index).Int("batch_size", cfg.BatchSize).
		Bool("auth", s.auth != "").Msg("search action ready")
	return s, nil
}

// Deliver indexes one event.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	errs := []error{nil}
	s.DeliverBatch(ctx, []*decoder.Event{ev}, errs)
	return errs[0]
}

// DeliverBatch indexes the events with bulk requests of at most batch_size actions,
// one after another; errs[i] receives the outcome of evs[i]: its bulk item's
// status, the request's outcome when the request failed as a whole, or its own
// permanent error when it cannot be indexed (TRUNCATE, no document id, ...).
func (s *Sink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	for start := 0; start < len(evs); start += s.cfg.BatchSize {
		end := min(start+s.cfg.BatchSize, len(evs))
		s.bulk(ctx, evs[start:end], errs[start:end])
	}
}

func (s *Sink) bulk(ctx context.Context, evs []*decoder.Event, errs []error) {
	buf := make([]byte, 0, 512*len(evs))
	sent := make([]int, 0, len(evs))
	actions := make([]string, 0, len(evs))
	for i, ev := range evs {
		var action string
		var err error
		if buf, action, err = s.appendOp(buf, ev); err != nil {
			errs[i] = err
			continue
		}
		sent = append(sent, i)
		actions = append(actions, action)
	}
	if len(sent) == 0 {
		return
	}
	results, err := s.send(ctx, buf, actions)
	for k, i := range sent {
		if err != nil {
			errs[i] = err
		} else {
			errs[i] = results[k]
		}
	}
}

// responseCap is how much of a bulk response is read: 64 KiB plus 2 KiB per item
// (a filtered item is far smaller; an error type is short).
func responseCap(items int) int64 { return egress.MaxResponseBytes + 2048*int64(items) }

// send posts one bulk request and returns one outcome per action, or an error that
// applies to all of them.
func (s *Sink) send(ctx context.Context, body []byte, actions []string) ([]error, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.bulkURL, bytes.NewReader(body))
	if err != nil {
		return nil, sinks.Permanent("request", fmt.Errorf("build bulk request to %s", egress.RedactURL(s.url)))
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "fraiseql-observers")
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		err = egress.TransportError(ctx, http.MethodPost, s.url, err)
		if sinks.Class(err) == "timeout" {
			err = fmt.Errorf("%w (timeout %s)", err, s.cfg.Timeout)
		}
		return nil, err
	}
	limit := responseCap(len(actions))
	data := egress.ReadCapped(resp.Body, limit+1)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("POST %s/_bulk: %w", egress.RedactURL(s.url), ctx.Err())
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return nil, fmt.Errorf("POST %s/_bulk: %w", egress.RedactURL(s.url), egress.StatusError(resp, time.Now(), ""))
	}
	if int64(len(data)) > limit {
		return nil, sinks.Transient("malformed_response", fmt.Errorf("POST %s/_bulk: response larger than %d bytes", egress.RedactURL(s.url), limit), 0)
	}
	if rctx.Err() != nil {
		return nil, sinks.Transient("timeout", fmt.Errorf("POST %s/_bulk: response body not read within %s", egress.RedactURL(s.url), s.cfg.Timeout), 0)
	}
	results, err := parseItems(data, actions)
	if err != nil {
		return nil, sinks.Transient("malformed_response", fmt.Errorf("POST %s/_bulk: %w", egress.RedactURL(s.url), err), 0)
	}
	return results, nil
}

// Close closes idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
