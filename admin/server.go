// Package admin is the service's HTTP endpoint for operators and Prometheus:
// /metrics, /healthz, /readyz, /status, /debug/events, /cache/stats, POST /replay and
// the snapshots (POST /snapshots, GET /snapshots, GET /snapshots/{id},
// POST /snapshots/{id}/cancel).
// It knows the service only through the small interfaces below, which cmd implements.
//
// The endpoint binds 127.0.0.1:9187 unless configured otherwise. With a token, every
// path but /healthz and /readyz (probes, which reveal nothing) needs
// "Authorization: Bearer <token>"; a missing or wrong token gets 401. Responses carry
// no row values: /debug/events reports verdicts, statuses and errors, never images.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
)

// DefaultListen is the address used when Options.Listen is empty: loopback only.
const DefaultListen = "127.0.0.1:9187"

// Readiness reports whether the service does its job: nil while it streams, else an
// error saying why not (connecting, reconnecting, draining).
type Readiness interface {
	Ready() error
}

// StatusReporter returns the /status document (any JSON-encodable value).
type StatusReporter interface {
	Status(ctx context.Context) (any, error)
}

// EventHistory is the pipeline's debug history, served at /debug/events. RecentEvents
// returns up to n recent events, newest first, as one JSON-encodable value (a list);
// FindEvent returns one event (a JSON-encodable value) and false when it is no longer
// remembered. The service adapts the pipeline's history to it.
type EventHistory interface {
	RecentEvents(n int) any
	FindEvent(id string) (any, bool)
}

// CacheReporter returns the /cache/stats document.
type CacheReporter interface {
	CacheStats() any
}

// Replayer re-delivers events from a position (POST /replay).
type Replayer interface {
	Replay(ctx context.Context, req ReplayRequest) (any, error)
}

// Snapshotter starts, lists and cancels snapshots (backfills of a table's rows).
type Snapshotter interface {
	StartSnapshot(ctx context.Context, req SnapshotRequest) (any, error)
	Snapshots(ctx context.Context) (any, error)
	Snapshot(ctx context.Context, id int64) (any, error)
	CancelSnapshot(ctx context.Context, id int64) (any, error)
}

// Options configures a Server. Nil interfaces make their endpoints answer 404.
type Options struct {
	// Listen is host:port (default DefaultListen).
	Listen string
	// Token, when not empty, is required as a bearer token.
	Token string
	// TLSCertFile and TLSKeyFile, when set, make the endpoint serve HTTPS only.
	TLSCertFile, TLSKeyFile string
	// Metrics is the service's one metric set, served at /metrics together with the
	// Go runtime and process metrics.
	Metrics *metrics.Set
	Ready   Readiness
	Status  StatusReporter
	Events  EventHistory
	Cache   CacheReporter
	Replay  Replayer
	// Snapshots serves /snapshots.
	Snapshots Snapshotter
	Logger    zerolog.Logger
}

// Server is the admin endpoint. Create it with New, then Listen and Serve (or Run).
type Server struct {
	opts    Options
	handler http.Handler
	tls     *tls.Config // nil: plain HTTP
}

// New returns a Server; it opens no socket and starts no goroutine.
func New(opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(opts.Listen); err != nil {
		return nil, fmt.Errorf("admin: listen address %q: %w", opts.Listen, err)
	}
	s := &Server{opts: opts}
	if opts.TLSCertFile != "" || opts.TLSKeyFile != "" {
		r := &certReloader{certFile: opts.TLSCertFile, keyFile: opts.TLSKeyFile, log: opts.Logger}
		if err := r.load(); err != nil {
			return nil, err
		}
		s.tls = &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12}
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the server's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Listen opens the listening socket, so that a busy port is reported before the
// service starts streaming.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin endpoint: listen on %s: %w", s.opts.Listen, err)
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	return ln, nil
}

// Serve serves on ln until ctx is cancelled, then shuts down gracefully (requests in
// progress get five seconds) and returns after every connection is closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Run listens and serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	ln, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// certReloader serves the certificate and key files, loading them again when
// either file changes, so a renewed certificate takes effect without a restart. A
// pair that fails to load (a half-written renewal) keeps the last good one in
// service.
type certReloader struct {
	certFile, keyFile string
	log               zerolog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // modification times and sizes of the files loaded
	checked time.Time
}

// stampOf identifies the current state of the two files.
func (r *certReloader) stampOf() (string, error) {
	var b strings.Builder
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d/%d;", st.ModTime().UnixNano(), st.Size())
	}
	return b.String(), nil
}

func (r *certReloader) load() error {
	stamp, err := r.stampOf()
	if err == nil {
		var cert tls.Certificate
		if cert, err = tls.LoadX509KeyPair(r.certFile, r.keyFile); err == nil {
			r.cert, r.stamp = &cert, stamp
			return nil
		}
	}
	return fmt.Errorf("admin: TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
}

// get is tls.Config.GetCertificate: it looks at the files at most once a second.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= time.Second {
		r.checked = time.Now()
		if stamp, err := r.stampOf(); err == nil && stamp != r.stamp {
			if err := r.load(); err != nil {
				r.log.Warn().Err(err).Msg("admin endpoint: keeping the previous TLS certificate")
			} else {
				r.log.Info().Str("cert", r.certFile).Msg("admin endpoint: TLS certificate reloaded")
			}
		}
	}
	return r.cert, nil
}
