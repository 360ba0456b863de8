// Package backoff is the one capped exponential backoff with jitter that the
// replication session (reconnects), the pipeline (delivery retries), snapshots
// (resuming) and the rabbitmq sink (reconnects) share, and a sleep that ends early
// when its context is done.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Exponential returns the delay after attempt failed attempts (attempt ≥ 1; less counts
// as 1): initial × 2^(attempt−1), capped at maxDelay (no cap when maxDelay ≤ 0), then
// moved by a random ±25% so that peers failing together do not retry together. It
// never overflows and never returns a negative delay. Safe for concurrent use.
func Exponential(attempt int, initial, maxDelay time.Duration) time.Duration {
	d := initial
	for i := 1; i < attempt && (maxDelay <= 0 || d < maxDelay); i++ {
		if d > 1<<61 { // doubling again would overflow
			break
		}
		d *= 2
	}
	if maxDelay > 0 && d > maxDelay {
		d = maxDelay
	}
	if d <= 0 {
		return 0
	}
	return d + time.Duration(float64(d)*(rand.Float64()*0.5-0.25))
}

// Sleep waits for d, or until ctx is done, whichever comes first; it returns ctx.Err()
// in the latter case and nil otherwise.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
