// Package database is the database action: for every event it calls a SQL function
// with one jsonb argument, the envelope {"event": <event JSON>, "params": <params>},
// as `SELECT schema.fn($1::jsonb)` in its own transaction (autocommit), or, with
// BatchSink, several calls per transaction, each in its own savepoint. The function's
// result is ignored; its errors are classified by SQLSTATE.
//
// See docs/actions/database.md for the keys, the envelope and the classification.
package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// DefaultTimeout bounds one function call when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxIdentLen is PostgreSQL's identifier limit (NAMEDATALEN - 1).
const maxIdentLen = 63

// minPoolConns is the floor of the pool an action with a dsn_env of its own
// opens: max(MaxPoolConns, the action's workers) connections.
const minPoolConns = 4

// Config is the database action configuration (YAML keys of a `type: database`
// action). Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// FunctionName is "name" or "schema.name"; each part is 1–63 characters of
	// letters, digits, _ and $, not starting with a digit or $. Parts are quoted when
	// called, so case matters: "Notify" is not "notify".
	FunctionName string `yaml:"function_name"`
	// Params is passed as the envelope's "params": a mapping from the YAML
	// (map[string]any), or JSON text (json.RawMessage); default {}.
	Params any `yaml:"params"`
	// DSN (dsn_env) is the connection string of another database to call the
	// function in, from the variable it names; unset, the source database's pool
	// (sinks.Deps.DB) is used.
	DSN configs.Secret `yaml:"dsn_env,env"`
	// Timeout bounds one call (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Batch is batch_size: more than 1 calls the function for up to that many
	// events in one transaction, each in its own savepoint (default 1: one
	// transaction per event).
	sinks.Batch `yaml:",inline"`
}

// Defaults fills the keys left out: timeout 10s, batch_size 1.
func (c *Config) Defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1
	}
}

// UsesDB reports whether the action calls the function through the source
// database's pool (no dsn_env).
func (c *Config) UsesDB() bool { return !c.DSN.IsSet() }

// params returns Params as JSON text ({} when unset).
func (c *Config) params() (json.RawMessage, error) {
	switch p := c.Params.(type) {
	case nil:
		return json.RawMessage(`{}`), nil
	case json.RawMessage:
		return p, nil
	case []byte:
		return p, nil
	case map[string]any:
		b, err := json.Marshal(p)
		if err != nil {
			return nil, sinks.KeyErrorf("params", fmt.Errorf("cannot be written as JSON: %w", err))
		}
		return b, nil
	}
	return nil, sinks.KeyErrorf("params", errors.New("must be a mapping (it is passed as a JSON object)"))
}

// poolConfig parses DSN (nil when unset or unknown). Its error never shows the
// password.
func (c *Config) poolConfig() (*pgxpool.Config, error) {
	if !c.DSN.IsSet() || !c.DSN.Known() {
		return nil, nil
	}
	pcfg, err := pgxpool.ParseConfig(c.DSN.Value())
	if err != nil {
		// pgx's error may quote the connection string, password included.
		return nil, sinks.KeyErrorf("dsn_env", fmt.Errorf("the connection string in %s cannot be parsed (%s): use a URL (postgres://user@host:5432/db?sslmode=verify-full) or key=value pairs",
			c.DSN.Env(), configs.RedactDSN(c.DSN.Value())))
	}
	return pcfg, nil
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults. Its errors are *sinks.KeyError values.
func (c *Config) Validate() error {
	params, err := c.params()
	if err != nil {
		return err
	}
	if _, err := ParseFunctionName(c.FunctionName); err != nil {
		return sinks.KeyErrorf("function_name", err)
	}
	if !json.Valid(params) {
		return sinks.KeyErrorf("params", errors.New("not valid JSON"))
	}
	if hasJSONNul(params) {
		return sinks.KeyErrorf("params", errors.New(`holds a \u0000 character, which jsonb cannot store`))
	}
	if c.Timeout < 0 {
		return sinks.KeyErrorf("timeout", errors.New("must not be negative"))
	}
	if err := c.Batch.Check(); err != nil {
		return err
	}
	_, err = c.poolConfig()
	return err
}

// Sink calls the function once per event, or, with batch_size > 1, for several
// events per transaction (DeliverBatch). It is safe for concurrent use; each call
// takes a connection from the pool.
type Sink struct {
	cfg    Config
	params json.RawMessage
	pool   *pgxpool.Pool
	close  bool
	name   pgx.Identifier
	sql    string
}

// New fills cfg's defaults, validates it and prepares the call, through deps.DB
// or, with dsn_env, through a pool of its own of max(4, deps.Concurrency)
// connections that Close closes. It fails without a pool (a database action never
// pretends to deliver), connects to nothing and starts no goroutine: connections
// are made by the first calls, each bounded by the timeout.
func New(ctx context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DSN.IsSet() && !cfg.DSN.Known() {
		return nil, sinks.KeyErrorf("dsn_env", errors.New("unknown: its environment variable is not set"))
	}
	params, _ := cfg.params()
	name, _ := ParseFunctionName(cfg.FunctionName)
	s := &Sink{cfg: cfg, params: params, pool: deps.DB, name: name, sql: "SELECT " + name.Sanitize() + "($1::jsonb)"}
	pcfg, err := cfg.poolConfig()
	if err != nil {
		return nil, err
	}
	if pcfg != nil {
		if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
			pcfg.ConnConfig.RuntimeParams["application_name"] = "fraiseql-observers"
		}
		pcfg.MaxConns = int32(max(minPoolConns, deps.Concurrency))
		// MinConns is 0: NewWithConfig does not connect.
		if s.pool, err = pgxpool.NewWithConfig(context.WithoutCancel(ctx), pcfg); err != nil {
			return nil, sinks.KeyErrorf("dsn_env", fmt.Errorf("connection pool: %w", err))
		}
		s.close = true
	}
	if s.pool == nil {
		return nil, errors.New("database action: no connection pool")
	}
	return s, nil
}

// ParseFunctionName splits "name" or "schema.name" into its parts, refusing anything
// that is not a plain identifier (no quoting, no dots inside parts, no SQL).
func ParseFunctionName(s string) (pgx.Identifier, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	var parts pgx.Identifier
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	if len(parts) > 2 {
		return nil, fmt.Errorf("%q: write name or schema.name", s)
	}
	const rule = "1-63 letters, digits, _ and $, not starting with a digit or $"
	for _, p := range parts {
		switch {
		case validIdent(p):
		case len(parts) == 1:
			return nil, fmt.Errorf("%q is not an identifier (%s)", s, rule)
		default:
			return nil, fmt.Errorf("%q: %q is not an identifier (%s)", s, p, rule)
		}
	}
	return parts, nil
}

// validIdent reports whether s matches ^[A-Za-z_][A-Za-z0-9_$]*$ within the length
// limit.
func validIdent(s string) bool {
	if s == "" || len(s) > maxIdentLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case ('0' <= c && c <= '9' || c == '$') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Deliver calls the function with ev's envelope and returns once the call has
// committed. Errors are *sinks.Error values classified by SQLSTATE (see Classify).
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	if err := s.check(); err != nil {
		return err
	}
	arg, err := s.envelope(ev)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.call(ctx, cctx, arg); err != nil {
		return Classify(ctx, cctx, s.name.Sanitize(), err)
	}
	return nil
}

// cancelGrace is how long a call may run past its timeout while the server handles
// the cancel request, before the connection is closed under it.
const cancelGrace = 5 * time.Second

// call runs the statement on a pooled connection (see withConn for timeouts).
func (s *Sink) call(ctx, callCtx context.Context, arg json.RawMessage) error {
	return s.withConn(ctx, callCtx, func(conn *pgx.Conn, hardCtx context.Context) error {
		_, err := conn.Exec(hardCtx, s.sql, arg)
		return err
	})
}

// withConn runs f on a pooled connection. When callCtx ends first, a cancel request
// stops the server's work (pgx's default on a context deadline only closes the socket,
// which leaves a function running in its backend until it next talks to the client);
// the connection is then closed instead of reused, so the cancel request cannot hit a
// later call. f's context ends cancelGrace after callCtx, as a last resort.
func (s *Sink) withConn(ctx, callCtx context.Context, f func(conn *pgx.Conn, hardCtx context.Context) error) error {
	conn, err := s.pool.Acquire(callCtx)
	if err != nil {
		return err
	}
	defer conn.Release()
	hardCtx, hardCancel := context.WithTimeout(ctx, s.cfg.Timeout+cancelGrace)
	defer hardCancel()
	sent := make(chan struct{})
	stop := context.AfterFunc(callCtx, func() {
		defer close(sent)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
		defer rcancel()
		conn.Conn().PgConn().CancelRequest(rctx)
	})
	err = f(conn.Conn(), hardCtx)
	if !stop() {
		<-sent
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
		conn.Conn().Close(cctx) // Release then drops it from the pool
		ccancel()
	}
	return err
}

// errInvalidName is the outcome of a call whose function name fails its check.
var errInvalidName = sinks.Permanent("invalid_function_name", errors.New("database action: invalid function name"))

// check validates the function name again before a call, as the original system did:
// the statement must never hold anything but the validated identifier.
func (s *Sink) check() error {
	for _, p := range s.name {
		if !validIdent(p) {
			return errInvalidName
		}
	}
	return nil
}

// envelope builds {"event": ..., "params": ...}. An event holding a NUL character in
// a string is refused: jsonb cannot store U+0000.
func (s *Sink) envelope(ev *decoder.Event) (json.RawMessage, error) {
	evJSON := ev.JSON()
	if hasJSONNul(evJSON) {
		return nil, sinks.Permanent("jsonb_nul", errors.New(`database action: the event holds a \u0000 character, which jsonb cannot store`))
	}
	b := make([]byte, 0, len(evJSON)+len(s.params)+24)
	b = append(b, `{"event":`...)
	b = append(b, evJSON...)
	b = append(b, `,"params":`...)
	b = append(b, s.params...)
	b = append(b, '}')
	return b, nil
}

// hasJSONNul reports whether JSON text b has a \u0000 escape. Backslashes appear only
// inside strings in valid JSON, so a scan of escapes suffices.
func hasJSONNul(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && b[i+2] == '0' && b[i+3] == '0' && b[i+4] == '0' && b[i+5] == '0' {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}

// Close closes the pool when the sink owns it.
func (s *Sink) Close() error {
	if s.close {
		s.pool.Close()
	}
	return nil
}
