package checkpoint

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// WriterOptions configures a Writer.
type WriterOptions struct {
	Store *Store
	// Slot reports the slot-wide settled position (the session's ack watermark).
	Slot func() (lsn.LSN, bool)
	// Actions reports per-action settled positions (the pipeline's progress).
	Actions func() map[string]lsn.Position
	// SystemID reports the server's system identifier ("" until connected).
	SystemID func() string
	// Interval between writes (default 1s).
	Interval time.Duration
	// Initial is the durable slot position before the first write (the loaded one).
	Initial lsn.LSN
	// OnError, when set, is told about each failed write (the service passes errors
	// that show PostgreSQL shutting down on to the replication session).
	OnError func(error)
	Logger  zerolog.Logger
	Metrics *metrics.Set
}

// Writer saves checkpoints periodically and tells the replication session how far it
// may confirm: only positions already written durably (Durable), so the slot is never
// ahead of our own checkpoint.
type Writer struct {
	opts    WriterOptions
	durable atomic.Uint64
	lastAt  atomic.Int64 // unix nanos of the last write (or check that nothing moved)
	failing atomic.Pointer[writeFailure]

	mu        sync.Mutex // serialises Save; guards last and lastWrite
	last      State
	lastWrite time.Time
}

// NewWriter returns a Writer; it starts no goroutine.
func NewWriter(opts WriterOptions) *Writer {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	w := &Writer{opts: opts}
	w.durable.Store(uint64(opts.Initial))
	if opts.Metrics != nil {
		opts.Metrics.GetOrCreateGauge("observer_checkpoint_age_seconds", func() float64 {
			n := w.lastAt.Load()
			if n == 0 {
				return 0
			}
			return time.Since(time.Unix(0, n)).Seconds()
		})
		opts.Metrics.GetOrCreateGauge("observer_checkpoint_lsn", func() float64 { return float64(w.durable.Load()) })
	}
	return w
}

// writeFailure is the state of a writer whose writes fail.
type writeFailure struct {
	err   error
	since time.Time
}

// Failing returns since when writes have been failing and the error of the last
// attempt, or a nil error when the last attempt succeeded.
func (w *Writer) Failing() (time.Time, error) {
	if f := w.failing.Load(); f != nil {
		return f.since, f.err
	}
	return time.Time{}, nil
}

// Durable returns the slot position last written durably.
func (w *Writer) Durable() lsn.LSN { return lsn.LSN(w.durable.Load()) }

// LastWrite returns the time of the last successful write (zero if none).
func (w *Writer) LastWrite() time.Time {
	if n := w.lastAt.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Run writes checkpoints every interval until ctx is cancelled. Failed writes are
// logged and retried at the next tick; ErrFenced ends Run with that error.
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// A write that cannot finish (a network cut) is abandoned in time for the
			// next one.
			fctx, cancel := context.WithTimeout(ctx, max(5*time.Second, 2*w.opts.Interval))
			err := w.flush(fctx, false)
			cancel()
			if err != nil {
				if errors.Is(err, ErrFenced) {
					return err
				}
				if ctx.Err() == nil {
					if w.opts.OnError != nil {
						w.opts.OnError(err)
					}
					w.opts.Logger.Warn().Err(err).Msg("checkpoint write failed; will retry")
				}
			}
		}
	}
}

// Flush writes the current positions now if they changed since the last write.
func (w *Writer) Flush(ctx context.Context) error { return w.flush(ctx, true) }

// flush writes the positions if they changed; unless final, a move of the slot
// position alone is written at most every ten intervals.
func (w *Writer) flush(ctx context.Context, final bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	sys := ""
	if w.opts.SystemID != nil {
		sys = w.opts.SystemID()
	}
	var st State
	st.SystemID = sys
	if w.opts.Slot != nil && sys != "" {
		if pos, ok := w.opts.Slot(); ok {
			st.Slot = pos
		}
	}
	if w.opts.Actions != nil {
		st.Actions = w.opts.Actions()
	}
	same := maps.Equal(st.Actions, w.last.Actions) && sys == w.last.SystemID
	if same && (st.Slot == w.last.Slot || (!final && time.Since(w.lastWrite) < 10*w.opts.Interval)) {
		// Nothing moved, or only the slot position because of WAL that holds nothing
		// for us (keepalives on an idle publication): such moves are written ten times
		// less often, or every write of ours would make WAL that moves it again.
		w.lastAt.Store(time.Now().UnixNano())
		return nil
	}
	if err := w.opts.Store.Save(ctx, st); err != nil {
		if f := w.failing.Load(); f == nil {
			w.failing.Store(&writeFailure{err: err, since: time.Now()})
		} else {
			w.failing.Store(&writeFailure{err: err, since: f.since})
		}
		return err
	}
	w.failing.Store(nil)
	w.last = st
	w.lastWrite = time.Now()
	w.lastAt.Store(w.lastWrite.UnixNano())
	if st.Slot > w.Durable() {
		w.durable.Store(uint64(st.Slot))
	}
	return nil
}
