package cdc

import (
	"sync/atomic"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// replayWindow holds the confirmed position back from the durable one, by bytes or by
// time, so that recent history stays in the slot and can be replayed.
type replayWindow struct {
	samples []windowSample // durable positions over time, oldest first
	held    atomic.Uint64  // bytes of WAL held back at the last status update
}

type windowSample struct {
	at  time.Time
	pos lsn.LSN
}

// hold returns the position to confirm for durable at now.
func (w *replayWindow) hold(durable lsn.LSN, o Options, now time.Time) lsn.LSN {
	pos := durable
	if o.ReplayWindowBytes > 0 {
		if uint64(durable) > o.ReplayWindowBytes {
			pos = durable - lsn.LSN(o.ReplayWindowBytes)
		} else {
			pos = 0
		}
	}
	if d := o.ReplayWindowDuration; d > 0 {
		if n := len(w.samples); n == 0 || w.samples[n-1].pos != durable {
			w.samples = append(w.samples, windowSample{now, durable})
		}
		cutoff := now.Add(-d)
		// The newest sample at or before the cutoff is what may be confirmed; without
		// one the service has not run for the whole window and confirms nothing new.
		i := 0
		for i+1 < len(w.samples) && !w.samples[i+1].at.After(cutoff) {
			i++
		}
		w.samples = w.samples[i:]
		if w.samples[0].at.After(cutoff) {
			pos = 0
		} else {
			pos = min(pos, w.samples[0].pos)
		}
	}
	w.held.Store(durable.Sub(pos))
	return pos
}

// WindowHeldBytes returns how many bytes of WAL the replay window held back at the
// last status update (observer_replay_window_held_bytes). Safe for concurrent use.
func (s *Session) WindowHeldBytes() uint64 { return s.window.held.Load() }
