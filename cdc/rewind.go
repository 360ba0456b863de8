package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// ReplayTooOldError reports a replay position the server no longer has: PostgreSQL
// would silently start at its slot's confirmed_flush_lsn instead, skipping everything
// in between, so the service refuses.
type ReplayTooOldError struct {
	Requested lsn.LSN
	Oldest    lsn.LSN // the slot's confirmed_flush_lsn: the oldest position it can replay from
	Slot      string
}

func (e *ReplayTooOldError) Error() string {
	return fmt.Sprintf("cannot replay from %s: slot %s can only replay from %s (its confirmed_flush_lsn); "+
		"older changes are gone from PostgreSQL. Set replay_window to keep more history", e.Requested, e.Slot, e.Oldest)
}

// rewindRequest asks the streaming goroutine to start again from to.
type rewindRequest struct {
	to   lsn.LSN
	done chan error
}

// rewindError ends a stream so that Run starts the next one at a rewind position.
type rewindError struct{ req rewindRequest }

func (e *rewindError) Error() string { return "rewinding to " + e.req.to.String() }

// OldestReplayable returns the slot's confirmed_flush_lsn: the oldest position the
// server can stream from again.
func (s *Session) OldestReplayable(ctx context.Context) (lsn.LSN, error) {
	slot, err := ReadSlot(ctx, s.opts.DB, s.opts.Slot)
	if err != nil {
		return 0, fmt.Errorf("read slot: %w", err)
	}
	if !slot.Exists {
		return 0, &GapError{Slot: s.opts.Slot, Reason: "the slot no longer exists"}
	}
	return slot.ConfirmedFlushLSN, nil
}

// Rewind makes the running session stream again from to, so changes committed from
// there on are sent again (the pipeline decides which actions deliver them). It
// refuses a position older than the slot keeps (*ReplayTooOldError) or later than what
// was received. It returns once the session has left its current stream.
func (s *Session) Rewind(ctx context.Context, to lsn.LSN) error {
	oldest, err := s.OldestReplayable(ctx)
	if err != nil {
		return err
	}
	if to < oldest {
		return &ReplayTooOldError{Requested: to, Oldest: oldest, Slot: s.opts.Slot}
	}
	if received := lsn.LSN(s.received.Load()); to > received {
		return fmt.Errorf("cannot replay from %s: it is after the last position received (%s); use start --start-lsn to skip ahead", to, received)
	}
	req := rewindRequest{to: to, done: make(chan error, 1)}
	select {
	case s.rewind <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return fmt.Errorf("rewind to %s: the session did not answer within a minute", to)
	}
}
