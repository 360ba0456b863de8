package sinks

import (
	"context"
	"crypto/tls"
	"net/netip"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/eval"
)

// Deps are what every action type's constructor gets besides its Config, the same
// shape for every sink: each package under sinks/ exports
//
//	func New(ctx context.Context, cfg Config, deps sinks.Deps) (*Sink, error)
//
// where ctx bounds what New does before it returns (only a sink that checks its
// target at start, such as nats, does I/O there) and *Sink implements the Sink
// interface package pipeline declares. The zero Deps is usable: it logs nothing,
// counts into nothing and reaches the network through the system's resolver and
// roots.
type Deps struct {
	// ActionID identifies the action ("observer.name") in metric labels, message
	// ids and the like.
	ActionID string
	// Logger is scoped to the action: it already carries action=<ActionID>.
	// Sinks log what they are built with and connection events; never row values
	// or secrets.
	Logger zerolog.Logger
	// Metrics is the service's metric set; nil counts into nothing.
	Metrics *metrics.Set
	// Templates compiles the action's {{ }} templates for its observer.
	Templates Templates
	// Resolver resolves host names for the egress guard of the HTTP sinks; nil
	// means the system's resolver. Tests map names to loopback addresses with it.
	Resolver Resolver
	// TLS, when set, is the client TLS configuration of HTTPS targets whose
	// action configures none of its own (tests: a private CA).
	TLS *tls.Config
	// DB is the pool of connections to the source database, for actions that run
	// SQL there (database without dsn_env).
	DB *pgxpool.Pool
	// Concurrency is the number of workers that deliver for the action, for sinks
	// that size a connection pool by it.
	Concurrency int
	// Now returns the time for signatures and message dates; nil means time.Now.
	Now func() time.Time
}

// Clock returns d.Now, or time.Now when it is nil.
func (d Deps) Clock() func() time.Time {
	if d.Now == nil {
		return time.Now
	}
	return d.Now
}

// MetricSet returns d.Metrics, or a private set when it is nil.
func (d Deps) MetricSet() *metrics.Set {
	if d.Metrics == nil {
		return metrics.NewSet()
	}
	return d.Metrics
}

// Resolver looks up the addresses of a host name; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Templates compiles an action's {{ }} templates for its observer: what they
// render sees the observer's entity as `entity`.
type Templates struct {
	// Meta is the observer's part of every event's environment (its entity name;
	// "" for a wildcard observer: the event's schema.table).
	Meta eval.Meta
	// Budget bounds each render (evaluation.* in the configuration); zero fields
	// mean eval's defaults.
	Budget eval.Budget
}

// Compile compiles a template with the escaping esc. Render it with
// eval.NewEnv(ev, t.Meta).
func (t Templates) Compile(src string, esc eval.Escape) (*eval.Template, error) {
	return eval.CompileTemplate(src, esc, eval.Options{Budget: t.Budget})
}
