package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observers/cdc"
)

// maxFlights bounds the chunks read and not yet settled: with the pipeline's byte
// budget it bounds a snapshot's memory, and it lets the next chunk be read while the
// last one's events are delivered.
const maxFlights = 4

// job runs one snapshot: it reads chunks, hands them to the tap and records the
// chunks whose events are all settled.
type job struct {
	m    *Manager
	info Info
	w    *watch
	r    *reader

	flights []*flight
	next    progress // where the next chunk starts
	nextAt  time.Time
	reading bool

	mu      sync.Mutex // guards done, for the status
	done    progress   // completed chunks (durable once saved)
	started time.Time
	base    int64 // rows read when this run started (for the rate)

	cancelled atomic.Bool
	cancel    chan struct{} // closed by Cancel
}

// flight is a chunk handed to the tap and not yet completed.
type flight struct {
	c   *chunk
	no  int64
	end progress // progress once the chunk is completed (rowsSent added then)
	got bool
	res chunkResult
}

// progressNow returns the completed progress (safe for concurrent use).
func (j *job) progressNow() progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.done
}

// rate returns the rows read per second since this run of the job started.
func (j *job) rate() float64 {
	d := time.Since(j.started).Seconds()
	if d < 1 {
		return 0
	}
	return float64(j.progressNow().rowsRead-j.base) / d
}

// run reads the table to its end. It returns nil when the snapshot is done or
// cancelled, ctx.Err() when ctx ends, and the error of a read or write otherwise.
func (j *job) run(ctx context.Context) error {
	m := j.m
	j.reading = true
	j.next = j.done
	probe := time.NewTicker(time.Second)
	defer probe.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	defer func() {
		for _, f := range j.flights {
			if !f.got {
				m.tap.abandon(f.c)
			}
		}
	}()
	for {
		if j.cancelled.Load() {
			return nil
		}
		if err := j.collect(ctx); err != nil {
			return err
		}
		if !j.reading && len(j.flights) == 0 {
			p := j.progressNow()
			if err := m.store.finish(ctx, j.info.ID, StateDone, ""); err != nil {
				return err
			}
			m.log.Info().Int64("snapshot", j.info.ID).Str("table", j.info.Table).Int64("rows_read", p.rowsRead).
				Int64("rows_sent", p.rowsSent).Int64("chunks", p.chunks).Msg("snapshot done")
			return nil
		}
		if j.reading && len(j.flights) < maxFlights && m.roomInPipeline() && !time.Now().Before(j.nextAt) {
			if err := j.readChunk(ctx); err != nil {
				return err
			}
			continue
		}
		var head <-chan chunkResult
		if len(j.flights) > 0 && !j.flights[0].got {
			head = j.flights[0].c.done
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-j.cancel:
		case res := <-head:
			j.flights[0].res, j.flights[0].got = res, true
			j.handedOn(j.flights[0])
		case <-poll.C:
		case <-probe.C:
			j.probe(ctx)
		}
	}
}

// handedOn counts a chunk's rows once the tap handed them on.
func (j *job) handedOn(f *flight) {
	j.m.metrics.rows(j.info.Table).Add(f.res.sent)
}

// collect completes the chunks at the head whose events are all settled, in order,
// and records the progress durably.
func (j *job) collect(ctx context.Context) error {
	m := j.m
	completed := false
	for len(j.flights) > 0 {
		f := j.flights[0]
		if !f.got {
			select {
			case f.res = <-f.c.done:
				f.got = true
				j.handedOn(f)
			default:
			}
		}
		if !f.got {
			break
		}
		if f.res.retry {
			// A change in the chunk's window could not be matched with its rows: read
			// it again, and the chunks after it.
			m.log.Info().Int64("snapshot", j.info.ID).Int64("chunk", f.no).Msg("snapshot chunk read again: a change in its window had no readable key")
			for _, g := range j.flights[1:] {
				if !g.got {
					m.tap.abandon(g.c)
				}
			}
			j.flights = nil
			j.next = j.progressNow()
			j.reading = true
			break
		}
		if f.res.last != 0 && !m.opts.Settled.Done(f.res.last) {
			break
		}
		j.mu.Lock()
		sent := j.done.rowsSent + int64(f.res.sent)
		j.done = f.end
		j.done.rowsSent = sent
		j.mu.Unlock()
		m.metrics.chunks(j.info.Table).Inc()
		j.flights = j.flights[1:]
		completed = true
	}
	if completed {
		return m.store.saveProgress(ctx, j.info.ID, j.progressNow())
	}
	return nil
}

// readChunk reads the next chunk and hands it to the tap (or ends the reading at the
// end of the table).
func (j *job) readChunk(ctx context.Context) error {
	m := j.m
	no := j.next.chunks + 1
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	c := m.tap.expect(j.w, nonce)
	rd, err := j.r.readRows(ctx, c, j.info.ID, no, j.next.lastKey)
	if err != nil {
		m.tap.abandon(c)
		return err
	}
	if rd.rows == 0 {
		m.tap.abandon(c)
		j.reading = false
		return nil
	}
	base, err := m.store.chunkBase(ctx, j.info.ID, no, rd.fingerprint, baseOf(rd.low))
	if err != nil {
		m.tap.abandon(c)
		return err
	}
	rd.setBase(base)
	for _, p := range rd.poison {
		if err := m.quarantine(ctx, p); err != nil {
			m.tap.abandon(c)
			return err
		}
	}
	m.tap.fill(c, rd.events, rd.keyOf, rd.snap)
	if m.afterRead != nil {
		m.afterRead(no)
	}
	if j.cancelled.Load() {
		// Cancelled while the chunk was read: it is not handed on (without its high
		// watermark the tap never releases it), so nothing is sent after the cancel.
		m.tap.abandon(c)
		return nil
	}
	if _, err := j.r.emit(ctx, "high", j.info.ID, no, nonce); err != nil {
		m.tap.abandon(c)
		return err
	}
	// An ALTER TABLE that committed after the read and before the high watermark
	// makes the rows older than their place in the stream: read the chunk again, with
	// the new definition (and new ids: the definition is part of the fingerprint).
	if sig, err := signature(ctx, j.r.conn, j.r.t.OID); err != nil {
		return err
	} else if sig != j.r.t.sig {
		return errTableChanged
	}
	end := progress{chunks: no, rowsRead: j.next.rowsRead + int64(rd.rows), lastKey: rd.lastKey}
	j.flights = append(j.flights, &flight{c: c, no: no, end: end})
	j.next = end
	if rd.rows < j.r.size && !rd.cut {
		j.reading = false // the last chunk
	}
	if rps := m.opts.RowsPerSecond; rps > 0 {
		j.nextAt = maxTime(j.nextAt, time.Now()).Add(time.Duration(float64(rd.rows) / rps * float64(time.Second)))
	}
	return nil
}

// probe prunes the watch's history with a fresh snapshot while the job waits, when it
// holds many changes (a busy table, chunks held back by backpressure).
func (j *job) probe(ctx context.Context) {
	if j.m.tap.historyLen(j.w) < 1024 {
		return
	}
	var text string
	if err := j.r.conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&text); err != nil {
		return // the next chunk's read reports a broken connection
	}
	if snap, err := parseSnapshot(text); err == nil {
		j.m.tap.prune(j.w, snap)
	}
}

// drain gives up the chunks not yet handed on and waits until the events of those
// handed on are settled (routed first), or ctx ends: after it, the observer targeting
// of the snapshot can end without a READ event being routed by event_type instead.
func (j *job) drain(ctx context.Context) {
	for _, f := range j.flights {
		if f.got {
			continue
		}
		j.m.tap.abandon(f.c)
		select { // handed on before it was given up?
		case f.res = <-f.c.done:
			f.got = true
		default:
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for _, f := range j.flights {
		for f.got && f.res.last != 0 && !j.m.opts.Settled.Done(f.res.last) {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
	j.flights = nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// quarantine parks a row that cannot become an event, or logs and skips it.
func (m *Manager) quarantine(ctx context.Context, p cdc.Poison) error {
	if m.opts.Quarantine == nil {
		m.log.Error().Str("event_id", p.ID.String()).Str("table", p.Schema+"."+p.Table).Str("reason", p.Reason).Err(p.Err).
			Msg("snapshot row cannot be delivered and the DLQ is disabled: skipped")
		return nil
	}
	if err := m.opts.Quarantine.Quarantine(ctx, p); err != nil {
		return fmt.Errorf("park snapshot row %s in the DLQ: %w", p.ID, err)
	}
	m.log.Warn().Str("event_id", p.ID.String()).Str("table", p.Schema+"."+p.Table).Str("reason", p.Reason).Err(p.Err).
		Msg("snapshot row cannot be delivered: parked in the DLQ")
	return nil
}

// permanent reports errors that reading again cannot cure, so the snapshot fails and
// the operator acts: a request that is no longer valid (the table dropped, its key
// gone, the observer removed), and server errors of the classes that say the query is
// wrong (22 data exception, such as a --where that divides by zero; 42 syntax or
// access rule violation, such as a dropped column or a missing privilege; 0A feature
// not supported).
func permanent(err error) bool {
	var re *RequestError
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &re):
		return true
	case errors.As(err, &pgErr):
		class := pgErr.Code[:min(2, len(pgErr.Code))]
		return class == "22" || class == "42" || class == "0A"
	}
	return false
}
