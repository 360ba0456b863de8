package service

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/dlq"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/registry"
	"github.com/fraiseql/fraiseql-observers/snapshot"
)

// StatusDoc is the /status document and the status command's JSON output. Every
// number comes from the running service or from PostgreSQL at the time of the call.
type StatusDoc struct {
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
	Leader             LeaderDoc           `json:"leader"`
	Listeners          []registry.Listener `json:"listeners"`
	SlotHealth         SlotDoc             `json:"slot_health"`
	Stream             *StreamDoc          `json:"stream,omitempty"`
	Checkpoints        []CheckpointDoc     `json:"checkpoints"`
	DLQ                DLQDoc              `json:"dlq"`
	Replay             ReplayWindowDoc     `json:"replay_window"`
	Failover           FailoverDoc         `json:"failover"`
	// Snapshots are the pending and running snapshots (backfills), oldest first.
	Snapshots []snapshot.Info `json:"snapshots"`
	// Transport is the nats transport as the answering instance sees it (absent
	// with the in_process transport and when read from PostgreSQL).
	Transport *TransportDoc `json:"transport,omitempty"`
}

// LeaderDoc names the instance that streams the slot and counts the healthy listeners.
type LeaderDoc struct {
	ListenerID string `json:"listener_id"` // "" when no instance streams the slot
	Healthy    int    `json:"healthy"`
	Total      int    `json:"total"`
}

// Line is the seed's leader line: "Leader: listener-1 (1/1 healthy)".
func (l LeaderDoc) Line() string {
	id := l.ListenerID
	if id == "" {
		id = "none"
	}
	return fmt.Sprintf("Leader: %s (%d/%d healthy)", id, l.Healthy, l.Total)
}

// SlotDoc is the slot_health part of the status document: the slot as PostgreSQL reports it.
type SlotDoc struct {
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

// StreamDoc is the running service's replication stream (absent when read from PostgreSQL).
type StreamDoc struct {
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

// CheckpointDoc is one stored checkpoint.
type CheckpointDoc struct {
	Action     string    `json:"action"` // "*" is the slot-wide row
	Position   string    `json:"position"`
	ListenerID string    `json:"listener_id"`
	UpdatedAt  time.Time `json:"updated_at"`
	AgeSeconds float64   `json:"age_seconds"`
	// DisabledAt is set when an instance has streamed the slot with checkpoints
	// disabled since this row was written: the slot's position supersedes it.
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

// DLQDoc is the DLQ part of the status document.
type DLQDoc struct {
	Enabled bool  `json:"enabled"`
	Pending int64 `json:"pending"`
}

// ReplayWindowDoc is the replay window: configured, and the WAL it holds on the server.
type ReplayWindowDoc struct {
	Configured string `json:"configured"` // "0" when off
	HeldBytes  uint64 `json:"held_bytes"`
}

// FailoverDoc is the failover part of the status document.
type FailoverDoc struct {
	Enabled bool `json:"enabled"`
	// The slot's lease (observer_epochs): who holds it, its fencing epoch and expiry.
	LeaseHolder   string     `json:"lease_holder,omitempty"`
	LeaseEpoch    int64      `json:"lease_epoch,omitempty"`
	LeaseExpires  *time.Time `json:"lease_expires,omitempty"`
	LeaseDuration string     `json:"lease_duration,omitempty"`
}

// TableExists reports whether schema.name exists.
func TableExists(ctx context.Context, pool *pgxpool.Pool, schema, name string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, name}.Sanitize()).Scan(&ok)
	return ok, err
}

// CollectStatus reads what PostgreSQL knows: registry, checkpoints, DLQ, slot. settled
// is the running service's settled position (0 when read from outside).
func CollectStatus(ctx context.Context, pool *pgxpool.Pool, cfg *configs.Config, settled lsn.LSN) (StatusDoc, cdc.SlotHealth, error) {
	doc, err := collectState(ctx, pool, cfg)
	if err != nil {
		return doc, cdc.SlotHealth{}, err
	}
	h, err := cdc.ReadSlotHealth(ctx, pool, cfg.Source.Slot, settled)
	if err != nil {
		return doc, h, err
	}
	doc.SlotHealth = SlotFromHealth(h)
	return doc, h, nil
}

// MeasureWALRate reads the slot's health again after d (first is the reading
// CollectStatus returned) and puts the slot health into doc with the current WAL rate,
// measured between the two readings, and the estimate of when the slot would be
// invalidated at that rate. Without a second reading doc is left as it is.
func MeasureWALRate(ctx context.Context, pool *pgxpool.Pool, cfg *configs.Config, doc *StatusDoc, first cdc.SlotHealth, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	h, err := cdc.ReadSlotHealth(ctx, pool, cfg.Source.Slot, 0)
	if err != nil || !h.At.After(first.At) {
		return nil // the first reading stands; only the rate is unknown
	}
	h.EstimateInvalidation(float64(h.CurrentWAL.Sub(first.CurrentWAL)) / h.At.Sub(first.At).Seconds())
	doc.SlotHealth = SlotFromHealth(h)
	doc.SlotHealth.WALRateKnown = true
	return nil
}

// collectState reads the registry, checkpoints and DLQ size.
func collectState(ctx context.Context, pool *pgxpool.Pool, cfg *configs.Config) (StatusDoc, error) {
	doc := StatusDoc{ListenerID: cfg.ListenerID, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication,
		Listeners: []registry.Listener{}, Checkpoints: []CheckpointDoc{}, CheckpointsEnabled: cfg.Checkpoints.Enabled,
		Replay:   ReplayWindowDoc{Configured: cfg.ReplayWindow.String()},
		Failover: FailoverDoc{Enabled: cfg.Failover.Enabled}}
	schema := cfg.State.Schema
	if cfg.Failover.Enabled {
		doc.Failover.LeaseDuration = cfg.Failover.LeaseDuration.String()
		h, err := checkpoint.ReadLease(ctx, pool, schema, cfg.Source.Slot)
		if err != nil {
			return doc, err
		}
		doc.Failover.LeaseHolder, doc.Failover.LeaseEpoch = h.ListenerID, h.Epoch
		if !h.ExpiresAt.IsZero() {
			doc.Failover.LeaseExpires = &h.ExpiresAt
		}
	}
	if ok, err := TableExists(ctx, pool, schema, registry.TableName); err != nil {
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

	stored, err := checkpoint.ReadStored(ctx, pool, schema, cfg.Source.Slot)
	if err != nil {
		return doc, err
	}
	for _, c := range stored {
		doc.Checkpoints = append(doc.Checkpoints, CheckpointDoc{Action: c.Action, Position: c.Position, ListenerID: c.ListenerID,
			UpdatedAt: c.UpdatedAt, AgeSeconds: c.AgeSeconds, DisabledAt: c.DisabledAt})
	}

	if doc.Snapshots, err = snapshot.Unfinished(ctx, pool, schema, cfg.Source.Slot); err != nil {
		return doc, err
	}
	if doc.Snapshots == nil {
		doc.Snapshots = []snapshot.Info{}
	}

	doc.DLQ.Enabled = cfg.DLQ.Enabled
	if ok, err := TableExists(ctx, pool, schema, dlq.TableName); err != nil {
		return doc, fmt.Errorf("read DLQ: %w", err)
	} else if ok {
		if doc.DLQ.Pending, err = dlq.NewStore(pool, dlq.Options{Schema: schema, Slot: cfg.Source.Slot}).Count(ctx); err != nil {
			return doc, err
		}
	}
	return doc, nil
}

// SlotFromHealth is the slot_health part of the document.
func SlotFromHealth(h cdc.SlotHealth) SlotDoc {
	s := SlotDoc{Name: h.Slot.Name, Exists: h.Slot.Exists, Active: h.Slot.Active, ActivePID: h.Slot.ActivePID,
		WALStatus: h.Slot.WALStatus, SafeWALSizeBytes: h.Slot.SafeWALSize, CurrentWALLSN: h.CurrentWAL.String(),
		ConfirmedLagBytes: h.ConfirmedLagBytes, RetainedBytes: h.RetainedBytes,
		WALRate: h.WALRate, TimeToInvalidate: h.TimeToInvalidationSeconds()}
	if h.Slot.Exists {
		s.RestartLSN, s.ConfirmedFlushLSN = h.Slot.RestartLSN.String(), h.Slot.ConfirmedFlushLSN.String()
	}
	return s
}
