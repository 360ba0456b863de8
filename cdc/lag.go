package cdc

import (
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// maxCommitMarks bounds the commit log; past it, neighbouring marks are merged.
const maxCommitMarks = 4096

// commitMark is a received transaction: the end of its commit record and its commit
// time.
type commitMark struct {
	end lsn.LSN
	at  time.Time
}

// commitLog remembers the received transactions that are not settled yet, oldest
// first, to measure lag in seconds. It is bounded: when full, each pair of neighbours
// is merged into one mark with the later end and the earlier commit time, so the lag
// it reports is never smaller than the truth. Safe for concurrent use.
type commitLog struct {
	mu    sync.Mutex
	marks []commitMark
}

func (c *commitLog) push(end lsn.LSN, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.marks) >= maxCommitMarks {
		n := 0
		for i := 0; i+1 < len(c.marks); i += 2 {
			c.marks[n] = commitMark{end: c.marks[i+1].end, at: c.marks[i].at}
			n++
		}
		if len(c.marks)%2 == 1 {
			c.marks[n] = c.marks[len(c.marks)-1]
			n++
		}
		clear(c.marks[n:])
		c.marks = c.marks[:n]
	}
	c.marks = append(c.marks, commitMark{end: end, at: at})
}

// oldest drops the marks settled at or below settled and returns the commit time of
// the oldest transaction still pending.
func (c *commitLog) oldest(settled lsn.LSN) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for i < len(c.marks) && c.marks[i].end <= settled {
		i++
	}
	if i > 0 {
		n := copy(c.marks, c.marks[i:])
		clear(c.marks[n:])
		c.marks = c.marks[:n]
	}
	if len(c.marks) == 0 {
		return time.Time{}, false
	}
	return c.marks[0].at, true
}

// reset forgets every mark: the stream starts again and re-sends what is pending.
func (c *commitLog) reset() {
	c.mu.Lock()
	clear(c.marks)
	c.marks = c.marks[:0]
	c.mu.Unlock()
}

// Settled returns the position up to which every received change has been settled
// (delivered, parked in the DLQ, or holding nothing for us): the ack watermark. It may
// be ahead of what is durably confirmed. Safe for concurrent use.
func (s *Session) Settled() lsn.LSN {
	p, _ := s.wm.Acked()
	return p
}

// LagSeconds returns how long the oldest received transaction that is not settled yet
// has been committed: now minus its commit time, or 0 when everything received is
// settled. Transactions the session has not received yet (backpressure, a
// disconnection) are not counted; observer_replication_lag_bytes covers them. Safe for
// concurrent use.
func (s *Session) LagSeconds(now time.Time) float64 {
	at, ok := s.commits.oldest(s.Settled())
	if !ok {
		return 0
	}
	return max(0, now.Sub(at).Seconds())
}
