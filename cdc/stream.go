package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// stream runs one replication connection from start until ctx is cancelled or the
// connection fails. streamed reports whether START_REPLICATION succeeded (so the
// reconnect backoff can start over).
func (s *Session) stream(ctx context.Context, start lsn.LSN) (streamed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := pgconn.ConnectConfig(cctx, s.replConfig())
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect for replication: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		conn.Close(cctx)
		cancel()
	}()
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("identify system: %w", err)
	}
	if known := s.SystemID(); known != "" && known != sys.SystemID {
		return false, &GapError{Slot: s.opts.Slot, Reason: fmt.Sprintf("the server's system identifier is %s, but our checkpoint was taken on %s: "+
			"this is a different cluster (restored or re-initialised); positions are not comparable", sys.SystemID, known)}
	}
	s.systemID.Store(sys.SystemID)
	err = pglogrepl.StartReplication(ctx, conn, s.opts.Slot, pglogrepl.LSN(start),
		pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: s.pluginArgs()})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use: slot held elsewhere
			return false, fmt.Errorf("start replication: slot %q is in use by another process: %w", s.opts.Slot, err)
		}
		return false, fmt.Errorf("start replication: %w", err)
	}
	if !s.claimed && s.opts.Claim != nil {
		if err := s.opts.Claim(ctx); err != nil {
			return false, fmt.Errorf("claim slot %s: %w", s.opts.Slot, err)
		}
		s.claimed = true
	}
	select {
	case <-s.leave: // noticed before this connection: the server is back now
	default:
	}
	s.commits.reset() // the server sends again everything after start
	s.connected.Store(true)
	s.log.Info().Str("slot", s.opts.Slot).Str("start_lsn", start.String()).Str("system_id", sys.SystemID).Msg("streaming")
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go s.probeShutdown(pctx)

	st := &streamState{s: s, conn: conn, dec: decoder.New(decoder.Options{
		MaxEventBytes: s.opts.MaxEventBytes,
		KeyColumns:    func(rel *decoder.Relation) []string { return s.primaryKey(ctx, rel) },
	})}
	return true, st.run(ctx)
}

// primaryKey finds the primary key of tables with REPLICA IDENTITY FULL, where pgoutput
// flags every column as key: events are partitioned by the real key, so one row's
// events stay in order when other columns change. The decoder calls it on the session
// goroutine, at most once per Relation message; on failure every column stays the key.
func (s *Session) primaryKey(ctx context.Context, rel *decoder.Relation) []string {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := s.opts.DB.Query(qctx, `
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = $1 AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)`, rel.ID)
	var names []string
	if err == nil {
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		s.log.Warn().Err(err).Str("table", rel.Namespace+"."+rel.Name).Msg("cannot look up the primary key; using every column as the key")
		return nil
	}
	return names
}

// streamState is the state of one connection; only the session goroutine touches it.
type streamState struct {
	s          *Session
	conn       *pgconn.PgConn
	dec        *decoder.Decoder
	batch      []*decoder.Event
	tickets    []lsn.Ticket // tickets[i] is the dispatch ticket of batch[i]
	nextStatus time.Time
	lastSent   lsn.LSN
	// silent is how long the session has waited for the server since its last
	// message (time spent waiting for the consumer does not count).
	silent time.Duration
	// lastReplyReq is when the server last asked for a reply, and quick how many
	// times in a row it asked again at once (a walsender waiting to stop).
	lastReplyReq time.Time
	quick        int
	fresh        []*decoder.Event // the events of the message being decoded
	// Events the Interceptor injects after the current one, at position injectAt.
	injected        []*decoder.Event
	injectedTickets []lsn.Ticket
	injectAt        lsn.LSN
}

func (st *streamState) run(ctx context.Context) error {
	s := st.s
	st.nextStatus = time.Now()
	// Reads wait with a deadline on the connection, not a context per ReceiveMessage
	// (pgconn watches each cancellable context with a goroutine of its own); one watcher
	// for the whole stream ends a read in progress when ctx is cancelled.
	nc := st.conn.Conn()
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Now()) })
	defer func() {
		stop()
		nc.SetReadDeadline(time.Time{})
	}()
	for {
		if ctx.Err() != nil {
			return st.finish(ctx)
		}
		select {
		case err := <-s.leave:
			return st.leave(ctx, err)
		default:
		}
		if !time.Now().Before(st.nextStatus) {
			// Ask for a reply: the server answers with a keepalive, which proves the
			// connection alive even when there is nothing to stream.
			if err := st.sendStatus(ctx, true); err != nil {
				return err
			}
		}
		select {
		case req := <-s.rewind:
			st.flush()
			return &rewindError{req: req}
		default:
		}
		if s.stopReading.Load() || s.out.Full() {
			st.flush()
			if err := st.waitCapacity(ctx); err != nil {
				return err
			}
			continue
		}
		// Wake up at least every 250ms to notice rewind requests.
		began := time.Now()
		if err := nc.SetReadDeadline(minTime(st.nextStatus, began.Add(250*time.Millisecond))); err != nil {
			return walsenderErr("receive", err)
		}
		if ctx.Err() != nil { // cancelled before the deadline was set: AfterFunc's is lost
			return st.finish(ctx)
		}
		msg, err := st.conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return st.finish(ctx)
			}
			if pgconn.Timeout(err) {
				st.flush()
				st.silent += time.Since(began)
				if st.silent > s.opts.ReceiveTimeout {
					return fmt.Errorf("no message from the server for %s although every status update asks for one: taking the connection for dead", st.silent.Round(time.Second))
				}
				continue
			}
			return walsenderErr("receive", err)
		}
		st.silent = 0
		if err := st.handle(ctx, msg); err != nil {
			return err
		}
	}
}

// waitCapacity blocks while the consumer is full (or reading is stopped), waking up for
// status updates, which keep the walsender from timing us out.
func (st *streamState) waitCapacity(ctx context.Context) error {
	t := time.NewTimer(min(time.Until(st.nextStatus), 250*time.Millisecond))
	defer t.Stop()
	var ready <-chan struct{}
	if !st.s.stopReading.Load() {
		ready = st.s.out.Ready()
	}
	select {
	case <-ctx.Done():
	case <-ready:
	case <-t.C:
	}
	return nil
}

func (st *streamState) handle(ctx context.Context, msg pgproto3.BackendMessage) error {
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return errors.New("empty CopyData message from server")
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return fmt.Errorf("parse keepalive: %w", err)
			}
			st.s.serverWALEnd.Store(uint64(ka.ServerWALEnd))
			st.idleAdvance(lsn.LSN(ka.ServerWALEnd))
			if ka.ReplyRequested {
				now := time.Now()
				if now.Sub(st.lastReplyReq) < quickReply {
					st.quick++
				} else {
					st.quick = 0
				}
				st.lastReplyReq = now
				if st.quick >= quickReplies {
					// The walsender stops once we confirm everything it sent (up to
					// the shutdown checkpoint), and asks again after every reply: we
					// confirm only what is settled, so leave instead of holding the
					// server up.
					err := &ServerShutdownError{Why: fmt.Sprintf("the walsender waits for a confirmation of %s", lsn.LSN(ka.ServerWALEnd))}
					st.s.serverLeaving(err)
					return st.leave(ctx, err)
				}
				return st.sendStatus(ctx, false)
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return fmt.Errorf("parse XLogData: %w", err)
			}
			if uint64(xld.ServerWALEnd) > st.s.serverWALEnd.Load() {
				st.s.serverWALEnd.Store(uint64(xld.ServerWALEnd))
			}
			return st.decode(ctx, lsn.LSN(xld.WALStart), xld.WALData)
		default:
			return fmt.Errorf("unexpected CopyData message type %q", msg.Data[0])
		}
	case *pgproto3.ErrorResponse:
		return &walsenderError{op: "replication stream", err: pgconn.ErrorResponseToPgError(msg)}
	case *pgproto3.CopyDone:
		return errors.New("server ended the replication stream")
	case *pgproto3.NoticeResponse:
		st.s.log.Info().Str("severity", msg.Severity).Str("notice", msg.Message).Msg("server notice")
	default:
		return fmt.Errorf("unexpected message %T in replication stream", msg)
	}
	return nil
}

// decode turns one pgoutput message into events, tickets them in stream order and
// batches them for the consumer. data aliases the connection's read buffer; the
// decoder copies every byte it keeps.
func (st *streamState) decode(ctx context.Context, walStart lsn.LSN, data []byte) error {
	s := st.s
	n := len(st.batch)
	evs, kind, err := st.dec.Decode(walStart, data, st.batch)
	if err != nil {
		if p, ok := poisonOf(err); ok {
			// One change that cannot become an event (too large, invalid text): it is
			// parked before the stream goes on, so its transaction is never confirmed
			// without it being recorded somewhere.
			return s.quarantine(ctx, p)
		}
		return fmt.Errorf("decode message at %s: %w", walStart, err)
	}
	// Drop changes of our own tables, then ticket the rest: each event's ticket carries
	// its transaction's commit LSN (confirming it never skips that transaction).
	st.fresh = append(st.fresh[:0], evs[n:]...) // kept may outgrow evs[:n] with injected events
	kept := evs[:n]
	for _, ev := range st.fresh {
		if ev.Schema != "" && s.ignore[ev.Schema+"."+ev.Table] {
			continue
		}
		pos := ev.ID.Commit
		if ev.Op == decoder.OpMessage && ev.Message != nil && !ev.Message.Transactional {
			pos = ev.LSN + 1 // confirming past a non-transactional message skips it
			if ev.Message.Prefix == HeartbeatPrefix {
				s.wm.Ack(s.wm.Dispatch(pos)) // our own heartbeat: nothing to deliver
				s.m.heartbeats.Inc()
				continue
			}
		}
		t := s.wm.Dispatch(pos)
		if ic := s.opts.Interceptor; ic != nil {
			st.injectAt = pos
			if !ic.Intercept(ev, st) {
				s.wm.Ack(t)
			} else {
				st.tickets = append(st.tickets, t)
				kept = append(kept, ev)
			}
			kept = append(kept, st.injected...)
			st.tickets = append(st.tickets, st.injectedTickets...)
			clear(st.injected)
			st.injected, st.injectedTickets = st.injected[:0], st.injectedTickets[:0]
			continue
		}
		st.tickets = append(st.tickets, t)
		kept = append(kept, ev)
	}
	clear(st.fresh)
	st.batch = kept
	switch kind {
	case decoder.KindCommit:
		c := st.dec.LastCommit()
		st.flush()
		// The commit marker: acknowledged at once, it lets the watermark reach the
		// transaction's end only after every event before it is settled.
		s.wm.Ack(s.wm.Dispatch(c.EndLSN))
		s.received.Store(uint64(c.EndLSN))
		s.lastCommit.Store(c.CommitTime.UnixNano())
		s.commits.push(c.EndLSN, c.CommitTime)
		s.m.transactions.Inc()
	}
	if len(st.batch) >= s.opts.BatchSize {
		st.flush()
	}
	return nil
}

// Inject implements Injector for the Interceptor.
func (st *streamState) Inject(ev *decoder.Event) lsn.Ticket {
	t := st.s.wm.Dispatch(st.injectAt)
	st.injected = append(st.injected, ev)
	st.injectedTickets = append(st.injectedTickets, t)
	return t
}

// flush hands the pending batch to the consumer.
func (st *streamState) flush() {
	if len(st.batch) == 0 {
		return
	}
	st.s.m.events.Add(len(st.batch))
	st.s.out.Push(st.batch, st.tickets)
	st.batch = make([]*decoder.Event, 0, st.s.opts.BatchSize)
	st.tickets = make([]lsn.Ticket, 0, st.s.opts.BatchSize)
}

// idleAdvance confirms the keepalive's WAL end when nothing is in flight, so an idle
// publication does not make the server retain WAL forever.
func (st *streamState) idleAdvance(walEnd lsn.LSN) {
	if st.dec.InTransaction() || len(st.batch) > 0 {
		return
	}
	st.s.wm.Advance(walEnd)
}

// sendStatus reports the durable position as written, flushed and applied. The three
// positions are set explicitly: never a received-but-unsettled position.
func (st *streamState) sendStatus(ctx context.Context, reply bool) error {
	durable := st.s.confirm.Durable()
	pos := st.s.window.hold(durable, st.s.opts, time.Now())
	pos = max(pos, st.lastSent, lsn.LSN(st.s.confirmed.Load()))
	st.s.window.held.Store(durable.Sub(pos))
	err := pglogrepl.SendStandbyStatusUpdate(ctx, st.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(pos),
		WALFlushPosition: pglogrepl.LSN(pos),
		WALApplyPosition: pglogrepl.LSN(pos),
		ClientTime:       time.Now(),
		ReplyRequested:   reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status update: %w", err)
	}
	st.lastSent = pos
	st.s.confirmed.Store(uint64(pos))
	st.nextStatus = time.Now().Add(st.s.opts.StatusInterval)
	return nil
}

// finish sends the last status update of a graceful shutdown. Events not yet handed
// over are dropped unacknowledged: the server sends them again after a restart.
func (st *streamState) finish(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := st.sendStatus(ctx, false); err != nil {
		st.s.log.Warn().Err(err).Msg("final status update failed")
		return nil
	}
	st.s.log.Info().Str("confirmed_lsn", st.lastSent.String()).Msg("replication stopped")
	return nil
}

// leave ends the connection because the server is shutting down: it reports what is
// durable, then hands err back so that the session reconnects with backoff.
func (st *streamState) leave(ctx context.Context, err *ServerShutdownError) error {
	st.flush()
	st.s.connected.Store(false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if serr := st.sendStatus(ctx, false); serr != nil {
		st.s.log.Debug().Err(serr).Msg("status update before leaving failed")
	}
	return err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// walsenderError is an error that reached the session on its replication connection
// once START_REPLICATION succeeded: the walsender's own, when it is a *pgconn.PgError.
type walsenderError struct {
	op  string
	err error
}

func (e *walsenderError) Error() string { return e.op + ": " + e.err.Error() }

func (e *walsenderError) Unwrap() error { return e.err }

// walsenderErr wraps err from the replication connection, marking a server error as
// the walsender's.
func walsenderErr(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &walsenderError{op: op, err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}
