package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/checkpoint"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/backoff"
	"github.com/fraiseql/fraiseql-observers/internal/words"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/transport"
)

// Roles of an instance (start --role). With transport.type in_process only RoleAll
// exists: the process reads the slot and runs the actions.
const (
	// RoleAll reads the slot and runs the actions (the default).
	RoleAll = "all"
	// RoleReader reads the slot and publishes the events to the transport's stream
	// (the original system's run_bridge).
	RoleReader = "reader"
	// RoleExecutor runs the actions for the partitions it owns (the original's
	// run_executors); it never opens the slot.
	RoleExecutor = "executor"
)

// Roles lists the values of start --role.
var Roles = []string{RoleAll, RoleReader, RoleExecutor}

// TransportConfig decodes the configuration's transport section into the
// transport's Config, fills its defaults and validates it. Errors are *configs.Errors
// (or one *configs.Error) at the file:line:column of the key concerned. A key whose
// environment variable was not set (configs.Options.DeferEnv) is not checked.
func TransportConfig(cfg *configs.Config) (transport.Config, error) {
	var tc transport.Config
	sec := &cfg.Transport
	if sec.Name == "" {
		sec = &configs.Section{Name: "transport"}
	}
	if err := sec.Decode(&tc); err != nil {
		return tc, err
	}
	if err := tc.Validate(); err != nil {
		var ke *sinks.KeyError
		if !errors.As(err, &ke) {
			return tc, &configs.Error{Pos: sec.Pos, Msg: "transport: " + err.Error()}
		}
		if !unsetKey(ke.Key, sec.Unset()) {
			key := ke.Key
			for _, k := range []string{ke.Key, ke.Key + "_env"} {
				if sec.Has(k) {
					key = k
					break
				}
			}
			return tc, sec.ErrorfAt(key, "%v", ke.Err)
		}
	}
	tc.Defaults()
	return tc, nil
}

// unsetKey reports whether key or its *_env form refers to a variable that was not
// set when the configuration was loaded.
func unsetKey(key string, unset []configs.Unset) bool {
	for _, u := range unset {
		if u.Key == key || u.Key == key+"_env" || strings.HasPrefix(u.Key, key+".") {
			return true
		}
	}
	return false
}

// checkRole returns the role the instance runs as: role ("" is RoleAll), which must
// be one of Roles and, except RoleAll, needs the nats transport.
func checkRole(role string, tc transport.Config, cfg *configs.Config) (string, error) {
	if role == "" {
		role = RoleAll
	}
	switch role {
	case RoleAll, RoleReader, RoleExecutor:
	default:
		return "", &ConfigError{Err: fmt.Errorf("--role must be reader, executor or all, not %q", role)}
	}
	if tc.Type != transport.TypeNATS {
		if role != RoleAll {
			return "", &ConfigError{Err: fmt.Errorf("--role %s needs transport.type: nats; with the in_process transport (%s) one process reads the slot and runs the actions: use --role all",
				role, orFile(cfg.Transport.TypePos, cfg.File))}
		}
		return role, nil
	}
	return role, nil
}

func orFile(p configs.Pos, file string) string {
	if p.IsValid() {
		return "at " + p.String()
	}
	return "the default, " + file + " has no transport section"
}

// nats reports whether the instance uses the nats transport.
func (s *Service) nats() bool { return s.tc.Type == transport.TypeNATS }

// ErrStoppedWaitingForNATS ends a start that was stopped while NATS could not be
// reached: not a failure.
var ErrStoppedWaitingForNATS = errors.New("stopped while waiting for NATS")

// connectTransport connects to NATS and makes sure the stream and the ownership
// bucket exist as configured (creating them when missing). While NATS cannot be
// reached it waits, logging each attempt, with backoff (source.reconnect), and the
// instance is not ready; a stream or bucket that does not fit the configuration is
// a configuration error at its key.
func (s *Service) connectTransport(ctx context.Context) error {
	c, err := transport.Connect(s.tc, s.log.With().Str("component", "transport").Logger())
	if err != nil {
		return s.transportConfigError(err)
	}
	s.tclient = c
	rc := s.cfg.Source.Reconnect
	for attempt := 1; ; attempt++ {
		_, err := c.EnsureStream(ctx)
		if err == nil {
			s.waitingFor.Store(nil)
			return nil
		}
		var ke *sinks.KeyError
		if errors.As(err, &ke) {
			return s.transportConfigError(err)
		}
		why := fmt.Sprintf("waiting for NATS: the transport's stream cannot be reached: %v", err)
		s.waitingFor.Store(&why)
		d := backoff.Exponential(attempt, rc.InitialDelay, rc.MaxDelay)
		s.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", d).Msg("NATS cannot be reached; waiting for it")
		if backoff.Sleep(ctx, d) != nil {
			return ErrStoppedWaitingForNATS
		}
	}
}

// transportConfigError reports a *sinks.KeyError of the transport at its key's
// position, as a configuration error; other errors are returned wrapped.
func (s *Service) transportConfigError(err error) error {
	var ke *sinks.KeyError
	if errors.As(err, &ke) {
		return &ConfigError{Err: s.cfg.Transport.ErrorfAt(ke.Key, "%v", ke.Err)}
	}
	return fmt.Errorf("transport: %w", err)
}

// buildTransportExecutor builds the executor side of the nats transport: the DLQ,
// the partitions' settled positions (deduplication.enabled) and a
// transport.Executor whose generations each build the observers and their sinks
// anew, fenced, acknowledging through the generation.
func (s *Service) buildTransportExecutor(ctx context.Context) error {
	if s.dlq == nil {
		if err := s.buildDLQ(ctx); err != nil {
			return err
		}
	}
	var positions transport.Positions
	if s.cfg.Deduplication.Enabled {
		ps := checkpoint.NewPartitions(s.pool, s.cfg.State.Schema, s.tc.Stream)
		if err := s.prepareTables(ctx, ps.Migrate); err != nil {
			return err
		}
		positions = ps
	}
	base := context.WithoutCancel(ctx)
	e, err := transport.NewExecutor(s.tclient, transport.ExecutorOptions{
		Logger:            s.log,
		Metrics:           s.set,
		Positions:         positions,
		PositionsInterval: s.cfg.Checkpoints.Interval,
		NewPipeline: func(g *transport.Generation) (*pipeline.Pipeline, error) {
			return s.generationPipeline(base, g)
		},
	})
	if err != nil {
		return err
	}
	s.exec = e
	return nil
}

// generationPipeline builds the stage graph of one generation of owned
// partitions: the same as in-process (conditions, per-row queues, retries, the
// DLQ), with every sink fenced by g and g as the Acker. Two stages moved out of it,
// because a generation reads several partitions side by side and a row's
// partition may have been served by another executor since: the row cache is the
// reader's (it fills each event before publishing it, in commit order, so the
// events arrive complete), and deduplication is the generation's, per partition
// against the settled positions stored in PostgreSQL (transport.Positions). The
// pipeline's own rules would be wrong here: its LSN-ordering rule compares ids
// across partitions (a partition that moves back is read from its first
// unacknowledged message, below ids already settled from the others: those events
// were dropped, acknowledged, in TestTransportExecutorKilled), and checkpoints are
// per action over one stream.
func (s *Service) generationPipeline(ctx context.Context, g *transport.Generation) (*pipeline.Pipeline, error) {
	observers, err := s.opts.Actions.Build(ctx, ActionDeps{Pool: s.pool, Metrics: s.set, Logger: s.log})
	if err != nil {
		return nil, err
	}
	for _, o := range observers {
		for _, a := range o.Actions {
			a.Sink = g.Fence(a.Sink)
		}
	}
	popts := s.pipelineOptions(observers, g, nil)
	popts.Dedup, popts.RowCache = nil, nil
	return pipeline.New(popts)
}

// imageObservers are the configured observers as the row cache needs them (table
// and operations, no condition, no action): they say which tables need images.
func imageObservers(obs []*configs.Observer) []*pipeline.Observer {
	out := make([]*pipeline.Observer, 0, len(obs))
	for _, co := range obs {
		o := &pipeline.Observer{Name: co.Name, Ops: co.Ops, MessagePrefix: co.MessagePrefix}
		if !co.Wildcard {
			o.Schema, o.Table = co.Table.Schema, co.Table.Table
		}
		out = append(out, o)
	}
	return out
}

// runExecutor runs the transport executor until ctx ends; the returned channel
// receives its outcome.
func (s *Service) runExecutor(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.exec.Run(ctx) }()
	return done
}

// runExecutorRole is Run for --role executor: the executor and the operator
// surface, no replication.
func (s *Service) runExecutorRole(ctx context.Context) error {
	defer s.close()
	base := context.WithoutCancel(ctx)
	ectx, ecancel := context.WithCancel(base)
	defer ecancel()
	done := s.runExecutor(ectx)
	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info().Msg("shutting down: settle what the owned partitions hold, release them")
		s.setDraining(base)
		ecancel()
		runErr = <-done
	case runErr = <-done:
	}
	s.setStopped(base)
	return runErr
}

// drainPublisher waits until JetStream acknowledged every event handed to the
// publisher, or ctx ends.
func (s *Service) drainPublisher(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.pub.Outstanding() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// transportProblem says why the transport keeps the instance from being ready, nil
// when it does not: NATS unreachable, or the reader's publishes failing.
func (s *Service) transportProblem() error {
	if s.tclient == nil {
		return nil
	}
	if !s.tclient.Connected() {
		return errors.New("NATS is unavailable: the transport cannot be reached (the reader holds the slot)")
	}
	if s.pub != nil && !s.pub.Available() && s.pub.Outstanding() > 0 {
		return errors.New("NATS JetStream does not acknowledge publishes: the reader holds the slot")
	}
	return nil
}

// TransportDoc is the transport part of the status document (nats transport only).
type TransportDoc struct {
	Type   string `json:"type"`
	Role   string `json:"role"`
	Stream string `json:"stream"`
	// Connected reports whether this instance's connection to NATS is up.
	Connected bool `json:"connected"`
	// Reader is this instance's publishing side (roles reader and all).
	Reader *TransportReaderDoc `json:"reader,omitempty"`
	// Executor is this instance's executor (roles executor and all).
	Executor *TransportExecutorDoc `json:"executor,omitempty"`
	// Executors are the live executors, as the ownership bucket holds them.
	Executors []string `json:"executors"`
	// Partitions is every partition's owner and backlog.
	Partitions []PartitionDoc `json:"partitions"`
	// Error says why the bucket or the stream could not be read.
	Error string `json:"error,omitempty"`
}

// TransportReaderDoc is the reader's side of the transport.
type TransportReaderDoc struct {
	// Available is false while NATS does not acknowledge publishes (the reader
	// then holds the slot).
	Available bool `json:"available"`
	// Outstanding counts the events handed to the publisher and not yet
	// acknowledged by JetStream.
	Outstanding int `json:"outstanding"`
	// AckedID is the event id at and below which JetStream holds every event.
	AckedID string `json:"acked_id,omitempty"`
}

// TransportExecutorDoc is this instance's executor.
type TransportExecutorDoc struct {
	ID    string `json:"id"`
	Owned []int  `json:"owned_partitions"`
}

// PartitionDoc is one partition: its owner, and its backlog in the stream
// (messages not yet delivered to its consumer, and delivered but not acknowledged).
type PartitionDoc struct {
	Partition  int    `json:"partition"`
	Owner      string `json:"owner"`
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
}

// transportDoc reads the transport's state for the status document.
func (s *Service) transportDoc(ctx context.Context) *TransportDoc {
	if s.tclient == nil {
		return nil
	}
	d := &TransportDoc{Type: s.tc.Type, Role: s.role, Stream: s.tc.Stream, Connected: s.tclient.Connected(),
		Executors: []string{}, Partitions: []PartitionDoc{}}
	if s.pub != nil {
		r := &TransportReaderDoc{Available: s.pub.Available() || (s.pub.Outstanding() == 0 && d.Connected), Outstanding: s.pub.Outstanding()}
		if p, ok := s.pub.Acked(); ok {
			r.AckedID = p.String()
		}
		d.Reader = r
	}
	if s.exec != nil {
		d.Executor = &TransportExecutorDoc{ID: s.exec.ID(), Owned: s.exec.Owned()}
		if d.Executor.Owned == nil {
			d.Executor.Owned = []int{}
		}
	}
	owners, members, err := s.tclient.Owners(ctx)
	if err != nil {
		d.Error = fmt.Sprintf("read the ownership bucket: %v", err)
		return d
	}
	if members != nil {
		d.Executors = members
	}
	for _, o := range owners {
		d.Partitions = append(d.Partitions, PartitionDoc{Partition: o.Partition, Owner: o.Owner})
	}
	backlogs, err := s.tclient.Backlogs(ctx)
	if err != nil {
		d.Error = fmt.Sprintf("read the stream's consumers: %v", err)
		return d
	}
	for _, b := range backlogs {
		if b.Partition < len(d.Partitions) {
			d.Partitions[b.Partition].Pending += b.Pending
			d.Partitions[b.Partition].AckPending += b.AckPending
		}
	}
	return d
}

// TransportChecks are the checks of the nats transport for validate-config
// --detailed: NATS reachable with the configured credentials, the stream (missing:
// the reader creates it; existing: its subjects, retention, duplicate window and
// partition count), and the executors and partitions as the ownership bucket holds
// them. None with the in_process transport. Nothing is created or changed.
func TransportChecks(ctx context.Context, cfg *configs.Config) []Check {
	tc, err := TransportConfig(cfg)
	if err != nil || tc.Type != transport.TypeNATS {
		return nil
	}
	var out []Check
	add := func(name, status, format string, args ...any) {
		out = append(out, Check{Name: name, Status: status, Message: fmt.Sprintf(format, args...)})
	}
	c, err := transport.Connect(tc, zerolog.Nop())
	if err != nil {
		add("transport_connect", CheckFail, "cannot connect to NATS (transport.url): %v", err)
		return out
	}
	defer c.Close()
	if err := c.WaitConnected(ctx); err != nil {
		add("transport_connect", CheckFail, "%v", err)
		return out
	}
	add("transport_connect", CheckOK, "connected to NATS for the transport")
	sc, err := c.CheckStream(ctx)
	switch {
	case err != nil:
		add("transport_stream", CheckFail, "%v", err)
		return out
	case !sc.Exists:
		add("transport_stream", CheckOK, "stream %s does not exist yet; the reader creates it (subjects %s.*, work queue, %s, duplicate window %s)",
			tc.Stream, tc.SubjectPrefix, words.Count(tc.Replicas, "replica", "replicas"), tc.DuplicateWindow)
		return out
	}
	add("transport_stream", CheckOK, "stream %s fits the transport (subjects %s.*, work queue, %s, %s): %s, %s",
		tc.Stream, tc.SubjectPrefix, words.Count(tc.Partitions, "partition", "partitions"), words.Count(sc.Replicas, "replica", "replicas"),
		words.Count(sc.Messages, "message", "messages"), words.Count(sc.Consumers, "consumer", "consumers"))
	if !sc.Bucket {
		add("transport_consumers", CheckWarn, "ownership bucket %s does not exist yet: no executor has run", c.OwnersBucket())
		return out
	}
	owners, members, err := c.Owners(ctx)
	if err != nil {
		add("transport_consumers", CheckFail, "cannot read the ownership bucket %s: %v", c.OwnersBucket(), err)
		return out
	}
	owned := 0
	for _, o := range owners {
		if o.Owner != "" {
			owned++
		}
	}
	backlogs, err := c.Backlogs(ctx)
	if err != nil {
		add("transport_consumers", CheckFail, "cannot read the stream's consumers: %v", err)
		return out
	}
	var pending uint64
	consumers := 0
	for _, b := range backlogs {
		pending += b.Pending + uint64(b.AckPending)
		if b.Consumer != "" {
			consumers++
		}
	}
	status := CheckOK
	if owned < len(owners) {
		status = CheckWarn
	}
	add("transport_consumers", status, "%s; %d/%d partitions owned; %s; %s not yet acknowledged",
		words.Count(len(members), "live executor", "live executors"), owned, len(owners),
		words.Count(consumers, "partition consumer", "partition consumers"), words.Count(pending, "message", "messages"))
	return out
}

// replayNATS is replay for the reader of the nats transport: the publisher
// publishes the range's events to the stream again, as the rewound session sends
// them, each under a Nats-Msg-Id of its own and marked as a replay for the
// observer (transport.Replay), and the executors deliver them again with their
// original ids, for that observer's actions only.
func (s *Service) replayNATS(ctx context.Context, observer string, from, to lsn.LSN) ([]string, error) {
	r := transport.Replay{From: from, To: to, Observer: observer, Stored: s.sess.Settled()}
	var ids []string
	for _, o := range s.cfg.Observers {
		if observer != "" && o.Name != observer {
			continue
		}
		if observer != "" {
			r.Only = observes(o)
		}
		for _, a := range o.Actions {
			ids = append(ids, a.ID)
		}
	}
	n, cancel := s.pub.Replay(r)
	if err := s.sess.Rewind(ctx, from); err != nil {
		cancel()
		return nil, err
	}
	s.log.Info().Str("observer", observer).Str("from_lsn", from.String()).Str("to_lsn", to.String()).Strs("actions", ids).
		Int64("replay", n).Msg("replay started: publishing the range to the transport's stream again")
	return ids, nil
}

// observes returns whether o can fire for an event: its operation is one of o's,
// on o's table (any, for a wildcard observer), or a message with o's prefix.
func observes(o *configs.Observer) func(ev *decoder.Event) bool {
	return func(ev *decoder.Event) bool {
		switch {
		case !slices.Contains(o.Ops, ev.Op):
			return false
		case ev.Op == decoder.OpMessage:
			return ev.Message != nil && (o.MessagePrefix == "" || o.MessagePrefix == ev.Message.Prefix)
		}
		return o.Wildcard || (o.Table.Schema == ev.Schema && o.Table.Table == ev.Table)
	}
}
