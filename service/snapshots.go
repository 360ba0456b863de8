package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/admin"
	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/snapshot"
)

// buildSnapshots prepares the snapshot manager (it needs the checkpoints: its
// progress is stored and fenced with them). Snapshots run, and the initial one is
// recorded, once the slot is ours (claim).
func (s *Service) buildSnapshots(ctx context.Context, cc *pgx.ConnConfig, loaded checkpoint.State) error {
	cfg := s.cfg
	var pipe snapshot.Pipeline = s.readerPipe // the nats transport's reader
	if s.pipe != nil {
		pipe = s.pipe
	}
	var err error
	s.snaps, err = snapshot.New(snapshot.Options{
		ConnConfig:       cc,
		Pool:             s.pool,
		Schema:           cfg.State.Schema,
		Slot:             cfg.Source.Slot,
		Publication:      cfg.Source.Publication,
		ListenerID:       cfg.ListenerID,
		Epoch:            s.elect.epoch.Load,
		ChunkSize:        cfg.Snapshot.ChunkSize,
		RowsPerSecond:    cfg.Snapshot.RowsPerSecond,
		MaxInFlightBytes: int64(cfg.Pipeline.MaxInFlightBytes),
		MaxEventBytes:    int(cfg.Source.MaxEventBytes),
		Pipeline:         pipe,
		Settled:          s.wm,
		Quarantine:       s.quarantine(),
		Streaming:        s.isClaimed,
		Logger:           s.log,
		Metrics:          s.set,
	})
	if err != nil {
		return err
	}
	if err := s.prepareTables(ctx, s.snaps.Migrate); err != nil {
		return err
	}
	// The first time the slot is streamed: no checkpoint of it was ever written.
	s.initialSnapshot = cfg.Snapshot.Mode == configs.SnapshotInitial && loaded.Slot == 0 && loaded.DisabledAt == nil && len(loaded.Actions) == 0
	return nil
}

// recordInitialSnapshot records, when the slot is claimed for the first time with
// snapshot.mode initial, a snapshot of every table with a READ observer. An instance
// that never gets the slot records nothing; a crash before it is recorded leaves no
// checkpoint, so the next start records it.
func (s *Service) recordInitialSnapshot(ctx context.Context) error {
	if s.snaps == nil || !s.initialSnapshot {
		return nil
	}
	tables, err := initialTables(ctx, s.pool, s.cfg)
	if err != nil {
		return err
	}
	return s.snaps.Initial(ctx, tables)
}

// initialTables returns the tables an initial snapshot reads: those of observers whose
// event_type lists READ, and every table of the publication when a wildcard observer
// does (the publication's configured tables when it does not exist yet).
func initialTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, cfg *configs.Config) ([]string, error) {
	var out []string
	wildcard := false
	for _, o := range cfg.Observers {
		switch {
		case !slices.Contains(o.Ops, decoder.OpRead):
		case o.Wildcard:
			wildcard = true
		case o.Table.Table != "" && !slices.Contains(out, o.Table.String()):
			out = append(out, o.Table.String())
		}
	}
	if !wildcard {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, cfg.Source.Publication)
	if err != nil {
		return nil, fmt.Errorf("read the tables of publication %s: %w", cfg.Source.Publication, err)
	}
	published, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the tables of publication %s: %w", cfg.Source.Publication, err)
	}
	if len(published) == 0 {
		published = tableNames(cfg.Source.PublicationTables)
	}
	state := StateTables(cfg.State.Schema)
	for _, t := range published {
		if !slices.Contains(out, t) && !slices.Contains(state, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// snapshotsOff is the answer of the snapshot endpoints without checkpoints.
var snapshotsOff = &admin.Error{Status: http.StatusBadRequest, Code: "snapshots_unavailable",
	Msg: "snapshots need checkpoints.enabled: their progress is stored with the checkpoints"}

// notStreaming is the answer of the snapshot endpoints that change something before
// the slot is this instance's.
var notStreaming = &admin.Error{Status: http.StatusServiceUnavailable, Code: "not_streaming",
	Msg: "this instance does not stream the slot (yet): snapshots run on the instance that does"}

// snapshotManager returns the manager once the service is built (nil: unavailable).
func (s *Service) snapshotManager(ctx context.Context, write bool) (*snapshot.Manager, error) {
	switch {
	case s.role == RoleExecutor:
		return nil, s.snapshotsOnExecutor(ctx)
	case !s.built.Load():
		return nil, notStreaming
	case s.snaps == nil:
		return nil, snapshotsOff
	case write && !s.isClaimed():
		return nil, notStreaming
	}
	return s.snaps, nil
}

// snapshotErr gives the snapshot package's errors their HTTP answers.
func snapshotErr(err error) error {
	var re *snapshot.RequestError
	var ce *snapshot.ConflictError
	switch {
	case errors.As(err, &re):
		return &admin.Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: re.Msg, Detail: map[string]string{"field": re.Field}}
	case errors.As(err, &ce):
		return &admin.Error{Status: http.StatusConflict, Code: "snapshot_conflict", Msg: ce.Error(),
			Detail: map[string]string{"snapshot_id": strconv.FormatInt(ce.ID, 10)}}
	case errors.Is(err, snapshot.ErrNotFound):
		return &admin.Error{Status: http.StatusNotFound, Code: "snapshot_not_found", Msg: "no such snapshot of this slot"}
	}
	return err
}

// StartSnapshot implements admin.Snapshotter.
func (s *Service) StartSnapshot(ctx context.Context, req admin.SnapshotRequest) (any, error) {
	snaps, err := s.snapshotManager(ctx, true)
	if err != nil {
		return nil, err
	}
	info, err := snaps.Start(ctx, snapshot.Request{Table: req.Table, Where: req.Where, Observer: req.Observer})
	if err != nil {
		return nil, snapshotErr(err)
	}
	return info, nil
}

// Snapshots implements admin.Snapshotter.
func (s *Service) Snapshots(ctx context.Context) (any, error) {
	snaps, err := s.snapshotManager(ctx, false)
	if err != nil {
		return nil, err
	}
	infos, err := snaps.List(ctx)
	if infos == nil {
		infos = []snapshot.Info{}
	}
	return infos, err
}

// Snapshot implements admin.Snapshotter.
func (s *Service) Snapshot(ctx context.Context, id int64) (any, error) {
	snaps, err := s.snapshotManager(ctx, false)
	if err != nil {
		return nil, err
	}
	info, err := snaps.Get(ctx, id)
	if err != nil {
		return nil, snapshotErr(err)
	}
	return info, nil
}

// CancelSnapshot implements admin.Snapshotter.
func (s *Service) CancelSnapshot(ctx context.Context, id int64) (any, error) {
	snaps, err := s.snapshotManager(ctx, true)
	if err != nil {
		return nil, err
	}
	info, err := snaps.Cancel(ctx, id)
	if err != nil {
		return nil, snapshotErr(err)
	}
	return info, nil
}
