// Package registry is the listener registry: every running instance of the service
// records itself in observer_listeners (slot, listener id, host, pid, version, state,
// epoch, heartbeat) every few seconds, so that the status command can say which
// instance leads the slot and how many are healthy — also when it runs on another
// host, or when the service is down.
//
// The table is UNLOGGED: heartbeats write no WAL, so they neither show up as
// replication lag nor keep an idle slot busy. After a PostgreSQL crash it starts empty
// and fills again with the next heartbeats.
package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/internal/pgschema"
)

// Listener states.
const (
	StateStarting     = "starting"     // building, preflight, connecting for the first time
	StateStandby      = "standby"      // failover: waiting for the slot's lease held by another instance
	StateStreaming    = "streaming"    // the replication connection is up
	StateReconnecting = "reconnecting" // the connection was lost; retrying with backoff
	StateDraining     = "draining"     // shutting down: reading stopped, in-flight events settling
	StateStopped      = "stopped"      // exited cleanly
)

// Record is what an instance reports about itself.
type Record struct {
	ListenerID string
	Host       string
	PID        int
	Version    string
	State      string
	Streaming  bool
	Epoch      int64
	StartedAt  time.Time
	// Interval is the heartbeat period; readers call an instance healthy while its
	// last heartbeat is younger than three periods.
	Interval time.Duration
	// Healthy says the instance does its job: a leader streams and writes its
	// checkpoints, a standby is ready to take over. It is not stored; the heartbeat
	// exports it as observer_listener_health while its writes succeed.
	Healthy bool
}

// Listener is a registered instance as read back, judged with the server's clock.
type Listener struct {
	ListenerID          string    `json:"listener_id"`
	Host                string    `json:"host"`
	PID                 int       `json:"pid"`
	Version             string    `json:"version"`
	State               string    `json:"state"`
	Streaming           bool      `json:"streaming"`
	Epoch               int64     `json:"epoch"`
	StartedAt           time.Time `json:"started_at"`
	LastHeartbeat       time.Time `json:"last_heartbeat"`
	HeartbeatAgeSeconds float64   `json:"heartbeat_age_seconds"`
	// Healthy: streaming (or a standby waiting for the lease), and the last heartbeat
	// is younger than three intervals.
	Healthy bool `json:"healthy"`
}

// TableName is the listener registry table, in the state schema.
const TableName = "observer_listeners"

// Store reads and writes the registry of one slot. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	slot   string
}

// NewStore returns a Store for the slot, with its table in schema.
func NewStore(pool *pgxpool.Pool, schema, slot string) *Store {
	if schema == "" {
		schema = "public"
	}
	return &Store{pool: pool, schema: schema, slot: slot}
}

// Table returns the quoted, schema-qualified table name.
func (s *Store) Table() string { return pgx.Identifier{s.schema, TableName}.Sanitize() }

// Migrate creates the table when it does not exist.
func (s *Store) Migrate(ctx context.Context) error {
	sql := fmt.Sprintf(`
CREATE UNLOGGED TABLE IF NOT EXISTS %[1]s (
	slot_name          text        NOT NULL,
	listener_id        text        NOT NULL,
	pid                integer     NOT NULL,
	host               text        NOT NULL,
	version            text        NOT NULL,
	state              text        NOT NULL,
	streaming          boolean     NOT NULL,
	epoch              bigint      NOT NULL DEFAULT 0,
	heartbeat_interval interval    NOT NULL,
	started_at         timestamptz NOT NULL,
	last_heartbeat     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (slot_name, listener_id)
);
COMMENT ON TABLE %[1]s IS 'fraiseql-observers instances and their heartbeats (see the status command)';`, s.Table())
	if err := pgschema.Ensure(ctx, s.pool, s.schema, []string{TableName}, sql); err != nil {
		return fmt.Errorf("create listener registry: %w", err)
	}
	return nil
}

// Upsert records r with a fresh heartbeat.
func (s *Store) Upsert(ctx context.Context, r Record) error {
	_, err := s.pool.Exec(ctx, fmt.Sprintf(`
INSERT INTO %s AS l (slot_name, listener_id, pid, host, version, state, streaming, epoch, heartbeat_interval, started_at, last_heartbeat)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
ON CONFLICT (slot_name, listener_id) DO UPDATE
SET pid = EXCLUDED.pid, host = EXCLUDED.host, version = EXCLUDED.version, state = EXCLUDED.state, streaming = EXCLUDED.streaming,
    epoch = EXCLUDED.epoch, heartbeat_interval = EXCLUDED.heartbeat_interval, started_at = EXCLUDED.started_at, last_heartbeat = now()`,
		s.Table()), s.slot, r.ListenerID, r.PID, r.Host, r.Version, r.State, r.Streaming, r.Epoch, r.Interval, r.StartedAt)
	if err != nil {
		return fmt.Errorf("record heartbeat: %w", err)
	}
	return nil
}

// List returns the registered instances of the slot, leader candidates first (newest
// epoch first). Health is judged with the server's clock.
func (s *Store) List(ctx context.Context) ([]Listener, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`
SELECT listener_id, host, pid, version, state, streaming, epoch, started_at, last_heartbeat,
       extract(epoch FROM now() - last_heartbeat)::float8,
       ((state = 'streaming' AND streaming) OR state = 'standby') AND now() - last_heartbeat <= 3 * heartbeat_interval
FROM %s WHERE slot_name = $1 ORDER BY streaming DESC, epoch DESC, listener_id`, s.Table()), s.slot)
	if err != nil {
		return nil, fmt.Errorf("read listener registry: %w", err)
	}
	defer rows.Close()
	var out []Listener
	for rows.Next() {
		var l Listener
		if err := rows.Scan(&l.ListenerID, &l.Host, &l.PID, &l.Version, &l.State, &l.Streaming, &l.Epoch, &l.StartedAt,
			&l.LastHeartbeat, &l.HeartbeatAgeSeconds, &l.Healthy); err != nil {
			return nil, fmt.Errorf("read listener registry: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Leader returns the instance that streams the slot — the healthy streaming one with
// the newest epoch — or "" when none does, and how many of the registered instances
// are healthy (standbys included).
func Leader(ls []Listener) (leader string, healthy, total int) {
	var best *Listener
	for i := range ls {
		l := &ls[i]
		if !l.Healthy {
			continue
		}
		healthy++
		if l.Streaming && (best == nil || l.Epoch > best.Epoch) {
			best = l
		}
	}
	if best != nil {
		leader = best.ListenerID
	}
	return leader, healthy, len(ls)
}
