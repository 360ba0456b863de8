package database

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// DeliverBatch sets errs[i] to the outcome of evs[i]. With batch_size 1 each event
// is its own call and transaction (Deliver). Otherwise the function is called for
// up to batch_size events per transaction, each call inside its own savepoint, so
// an event whose call fails is rolled back alone and keeps its own error while the
// others commit together. When the COMMIT itself fails (a deferred constraint, a
// serialization failure), nothing of the batch was applied and every event is
// called again in its own transaction, so each still gets its own outcome. The
// configured timeout bounds each transaction.
func (s *Sink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	size := s.cfg.BatchSize
	if size <= 1 {
		for i, ev := range evs {
			errs[i] = s.Deliver(ctx, ev)
		}
		return
	}
	for start := 0; start < len(evs); start += size {
		end := min(start+size, len(evs))
		s.deliverTx(ctx, evs[start:end], errs[start:end])
	}
}

// deliverTx delivers evs in one transaction.
func (s *Sink) deliverTx(ctx context.Context, evs []*decoder.Event, errs []error) {
	args := make([]json.RawMessage, len(evs))
	var todo []int // events to call, in order
	for i, ev := range evs {
		errs[i] = s.check()
		if errs[i] == nil {
			args[i], errs[i] = s.envelope(ev)
		}
		if errs[i] == nil {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return
	}
	if len(todo) == 1 {
		errs[todo[0]] = s.Deliver(ctx, evs[todo[0]])
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var called []int
	err := s.withConn(ctx, cctx, func(conn *pgx.Conn, hardCtx context.Context) error {
		tx, err := conn.Begin(hardCtx)
		if err != nil {
			return err
		}
		defer tx.Rollback(hardCtx) // a no-op after Commit
		for len(todo) > 0 {
			b := &pgx.Batch{}
			for _, i := range todo {
				b.Queue("SAVEPOINT fraiseql_event")
				b.Queue(s.sql, args[i])
				b.Queue("RELEASE SAVEPOINT fraiseql_event")
			}
			failed, err := s.runBatch(ctx, cctx, tx.SendBatch(hardCtx, b), todo, errs)
			if err != nil {
				return err
			}
			if failed < 0 {
				called = append(called, todo...)
				break
			}
			called = append(called, todo[:failed]...)
			todo = todo[failed+1:]
			if _, err := tx.Exec(hardCtx, "ROLLBACK TO SAVEPOINT fraiseql_event"); err != nil {
				return err
			}
		}
		return tx.Commit(hardCtx)
	})
	switch {
	case err == nil:
		for _, i := range called {
			errs[i] = nil
		}
		return
	case ctx.Err() != nil || errors.Is(cctx.Err(), context.DeadlineExceeded) || !isServerError(err):
		// Cancelled, timed out or the connection broke: nothing was committed; every
		// event not already refused gets the failure.
		err = Classify(ctx, cctx, s.name.Sanitize(), err)
		for _, i := range called {
			errs[i] = err
		}
		for _, i := range todo {
			errs[i] = err
		}
		return
	}
	// The COMMIT (or a statement around the calls) failed on the server and rolled
	// everything back: call each event again in its own transaction, so the outcome is
	// its own.
	for _, i := range called {
		errs[i] = s.Deliver(ctx, evs[i])
	}
}

// runBatch reads the results of a batch of (SAVEPOINT, call, RELEASE) triples for the
// events todo. It returns the position in todo of the first call that failed (its
// error classified into errs), or -1 when all succeeded; err is a failure that is not
// a call's own (the connection, a savepoint statement).
func (s *Sink) runBatch(ctx, cctx context.Context, br pgx.BatchResults, todo []int, errs []error) (failed int, err error) {
	defer func() {
		if cerr := br.Close(); err == nil && failed < 0 && cerr != nil {
			err = cerr
		}
	}()
	for k, i := range todo {
		if _, err := br.Exec(); err != nil { // SAVEPOINT
			return -1, err
		}
		if _, err := br.Exec(); err != nil { // the call
			if !isServerError(err) {
				return -1, err
			}
			errs[i] = Classify(ctx, cctx, s.name.Sanitize(), err)
			return k, nil
		}
		if _, err := br.Exec(); err != nil { // RELEASE
			return -1, err
		}
	}
	return -1, nil
}

// isServerError reports whether err is an error the server returned for a statement
// (the connection is still usable).
func isServerError(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe)
}
