package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/registry"
	"github.com/fraiseql/fraiseql-observers/snapshot"
)

// statusDoc is the /status document and the status command's JSON output. Every
// number comes from the running service or from PostgreSQL at the time of the call.
type statusDoc struct {
	// Source is "service" (the running service answered) or "postgres" (read from
	// the database because the service's admin endpoint did not answer).
	Source  string `json:"source"`
	Note    string `json:"note,omitempty"`
	Version string `json:"version,omitempty"`
	// Role is the answering instance's: "leader" (it holds the slot, or is starting
	// to) or "standby" (waiting for the slot's lease); RoleDetail says why it is not
	// ready when it is not streaming yet. Empty when read from PostgreSQL.
	Role       string `json:"role,omitempty"`
	RoleDetail string `json:"role_detail,omitempty"`
	// CheckpointsEnabled is checkpoints.enabled of the configuration.
	CheckpointsEnabled bool                `json:"checkpoints_enabled"`
	ListenerID         string              `json:"listener_id"`
	Slot               string              `json:"slot"`
	Publication        string              `json:"publication"`
	Leader             leaderDoc           `json:"leader"`
	Listeners          []registry.Listener `json:"listeners"`
	SlotHealth         slotDoc             `json:"slot_health"`
	Stream             *streamDoc          `json:"stream,omitempty"`
	Checkpoints        []checkpointDoc     `json:"checkpoints"`
	DLQ                dlqDoc              `json:"dlq"`
	Replay             replayWindowDoc     `json:"replay_window"`
	Failover           failoverDoc         `json:"failover"`
	// Snapshots are the pending and running snapshots (backfills), oldest first.
	Snapshots []snapshot.Info `json:"snapshots"`
}

type leaderDoc struct {
	ListenerID string `json:"listener_id"` // "" when no instance streams the slot
	Healthy    int    `json:"healthy"`
	Total      int    `json:"total"`
}

// line is the seed's leader line: "Leader: listener-1 (1/1 healthy)".
func (l leaderDoc) line() string {
	id := l.ListenerID
	if id == "" {
		id = "none"
	}
	return fmt.Sprintf("Leader: %s (%d/%d healthy)", id, l.Healthy, l.Total)
}

type slotDoc struct {
	Name              string   `json:"name"`
	Exists            bool     `json:"exists"`
	Active            bool     `json:"active"`
	ActivePID         int32    `json:"active_pid,omitempty"`
	WALStatus         string   `json:"wal_status"`
	SafeWALSizeBytes  *int64   `json:"safe_wal_size_bytes"`
	RestartLSN        string   `json:"restart_lsn"`
	ConfirmedFlushLSN string   `json:"confirmed_flush_lsn"`
	CurrentWALLSN     string   `json:"current_wal_lsn"`
	ConfirmedLagBytes uint64   `json:"confirmed_lag_bytes"`
	RetainedBytes     uint64   `json:"retained_bytes"`
	WALRate           float64  `json:"wal_rate_bytes_per_second"`
	WALRateKnown      bool     `json:"wal_rate_known"`
	TimeToInvalidate  *float64 `json:"time_to_invalidation_seconds"`
}

type streamDoc struct {
	State          string  `json:"state"`
	Ready          bool    `json:"ready"`
	NotReadyReason string  `json:"not_ready_reason,omitempty"`
	ReceivedLSN    string  `json:"received_lsn"`
	SettledLSN     string  `json:"settled_lsn"`
	ConfirmedLSN   string  `json:"confirmed_lsn"`
	ServerWALEnd   string  `json:"server_wal_end"`
	LagBytes       uint64  `json:"lag_bytes"`
	LagSeconds     float64 `json:"lag_seconds"`
	Reconnects     int64   `json:"reconnects"`
	LastError      string  `json:"last_error,omitempty"`
	LastCommitTime *string `json:"last_commit_time"`
	InFlightBytes  int64   `json:"in_flight_bytes"`
}

type checkpointDoc struct {
	Action     string    `json:"action"` // "*" is the slot-wide row
	Position   string    `json:"position"`
	ListenerID string    `json:"listener_id"`
	UpdatedAt  time.Time `json:"updated_at"`
	AgeSeconds float64   `json:"age_seconds"`
	// DisabledAt is set when an instance has streamed the slot with checkpoints
	// disabled since this row was written: the slot's position supersedes it.
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

type dlqDoc struct {
	Enabled bool  `json:"enabled"`
	Pending int64 `json:"pending"`
}

type replayWindowDoc struct {
	Configured string `json:"configured"` // "0" when off
	HeldBytes  uint64 `json:"held_bytes"`
}

type failoverDoc struct {
	Enabled bool `json:"enabled"`
	// The slot's lease (observer_epochs): who holds it, its fencing epoch and expiry.
	LeaseHolder   string     `json:"lease_holder,omitempty"`
	LeaseEpoch    int64      `json:"lease_epoch,omitempty"`
	LeaseExpires  *time.Time `json:"lease_expires,omitempty"`
	LeaseDuration string     `json:"lease_duration,omitempty"`
}

// tableExists reports whether schema.name exists.
func tableExists(ctx context.Context, pool *pgxpool.Pool, schema, name string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, name}.Sanitize()).Scan(&ok)
	return ok, err
}

// collectStatus reads what PostgreSQL knows: registry, checkpoints, DLQ, slot. settled
// is the running service's settled position (0 when read from outside).
func collectStatus(ctx context.Context, pool *pgxpool.Pool, cfg *configs.Config, settled lsn.LSN) (statusDoc, cdc.SlotHealth, error) {
	doc, err := collectState(ctx, pool, cfg)
	if err != nil {
		return doc, cdc.SlotHealth{}, err
	}
	h, err := cdc.ReadSlotHealth(ctx, pool, cfg.Source.Slot, settled)
	if err != nil {
		return doc, h, err
	}
	doc.SlotHealth = slotFromHealth(h)
	return doc, h, nil
}

// collectState reads the registry, checkpoints and DLQ size.
func collectState(ctx context.Context, pool *pgxpool.Pool, cfg *configs.Config) (statusDoc, error) {
	doc := statusDoc{ListenerID: cfg.ListenerID, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication,
		Listeners: []registry.Listener{}, Checkpoints: []checkpointDoc{}, CheckpointsEnabled: cfg.Checkpoints.Enabled,
		Replay:   replayWindowDoc{Configured: cfg.ReplayWindow.String()},
		Failover: failoverDoc{Enabled: cfg.Failover.Enabled}}
	schema := cfg.State.Schema
	if cfg.Failover.Enabled {
		doc.Failover.LeaseDuration = cfg.Failover.LeaseDuration.String()
		if ok, err := tableExists(ctx, pool, schema, "observer_epochs"); err == nil && ok {
			err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT listener_id, epoch, expires_at FROM %s WHERE slot_name = $1`,
				pgx.Identifier{schema, "observer_epochs"}.Sanitize()), cfg.Source.Slot).
				Scan(&doc.Failover.LeaseHolder, &doc.Failover.LeaseEpoch, &doc.Failover.LeaseExpires)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return doc, fmt.Errorf("read the slot's lease: %w", err)
			}
		}
	}
	if ok, err := tableExists(ctx, pool, schema, "observer_listeners"); err != nil {
		return doc, fmt.Errorf("read listener registry: %w", err)
	} else if ok {
		if doc.Listeners, err = registry.NewStore(pool, schema, cfg.Source.Slot).List(ctx); err != nil {
			return doc, err
		}
		if doc.Listeners == nil {
			doc.Listeners = []registry.Listener{}
		}
	}
	doc.Leader.ListenerID, doc.Leader.Healthy, doc.Leader.Total = registry.Leader(doc.Listeners)

	if ok, err := tableExists(ctx, pool, schema, "observer_checkpoints"); err != nil {
		return doc, fmt.Errorf("read checkpoints: %w", err)
	} else if ok {
		// disabled_at through to_jsonb: tables of an earlier version lack the column.
		rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT action, commit_lsn::text, ordinal, listener_id, created_at,
       extract(epoch FROM now() - created_at)::float8, (to_jsonb(c) ->> 'disabled_at')::timestamptz
FROM %s c WHERE slot_name = $1 ORDER BY action = '*' DESC, action`, pgx.Identifier{schema, "observer_checkpoints"}.Sanitize()), cfg.Source.Slot)
		if err != nil {
			return doc, fmt.Errorf("read checkpoints: %w", err)
		}
		for rows.Next() {
			var c checkpointDoc
			var l string
			var ord int64
			if err := rows.Scan(&c.Action, &l, &ord, &c.ListenerID, &c.UpdatedAt, &c.AgeSeconds, &c.DisabledAt); err != nil {
				rows.Close()
				return doc, fmt.Errorf("read checkpoints: %w", err)
			}
			c.Position = l
			if c.Action != "*" {
				c.Position = fmt.Sprintf("%s:%d", l, ord)
			}
			doc.Checkpoints = append(doc.Checkpoints, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return doc, fmt.Errorf("read checkpoints: %w", err)
		}
	}

	var err error
	if doc.Snapshots, err = snapshot.Unfinished(ctx, pool, schema, cfg.Source.Slot); err != nil {
		return doc, err
	}
	if doc.Snapshots == nil {
		doc.Snapshots = []snapshot.Info{}
	}

	doc.DLQ.Enabled = cfg.DLQ.Enabled
	if ok, err := tableExists(ctx, pool, schema, "observer_dlq"); err != nil {
		return doc, fmt.Errorf("read DLQ: %w", err)
	} else if ok {
		if doc.DLQ.Pending, err = dlq.NewStore(pool, dlq.Options{Schema: schema, Slot: cfg.Source.Slot}).Count(ctx); err != nil {
			return doc, err
		}
	}
	return doc, nil
}

func slotFromHealth(h cdc.SlotHealth) slotDoc {
	s := slotDoc{Name: h.Slot.Name, Exists: h.Slot.Exists, Active: h.Slot.Active, ActivePID: h.Slot.ActivePID,
		WALStatus: h.Slot.WALStatus, SafeWALSizeBytes: h.Slot.SafeWALSize, CurrentWALLSN: h.CurrentWAL.String(),
		ConfirmedLagBytes: h.ConfirmedLagBytes, RetainedBytes: h.RetainedBytes,
		WALRate: h.WALRate, TimeToInvalidate: h.TimeToInvalidationSeconds()}
	if h.Slot.Exists {
		s.RestartLSN, s.ConfirmedFlushLSN = h.Slot.RestartLSN.String(), h.Slot.ConfirmedFlushLSN.String()
	}
	return s
}

// statePool opens a small pool on the configuration's database for CLI commands.
func statePool(ctx context.Context, cfg *configs.Config) (*pgxpool.Pool, error) {
	// What reading the service's state uses (loaded with configs.Options.DeferEnv).
	if err := cfg.Need("source", "state", "listener_id"); err != nil {
		return nil, &codeError{code: exitConfig, err: err}
	}
	cc, err := connConfig(cfg)
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig = cc.Copy()
	pcfg.ConnConfig.RuntimeParams["application_name"] = "fraiseql-observers-cli"
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return pool, nil
}
