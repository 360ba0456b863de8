package backoff

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	f := func(attempt int, initial, maxDelay, lo, hi time.Duration) {
		t.Helper()
		for range 200 {
			if d := Exponential(attempt, initial, maxDelay); d < lo || d > hi {
				t.Fatalf("unexpected delay for attempt %d (initial %v, max %v); got %v; want in [%v, %v]", attempt, initial, maxDelay, d, lo, hi)
			}
		}
	}
	ms := time.Millisecond
	f(1, 100*ms, time.Second, 75*ms, 125*ms)
	f(0, 100*ms, time.Second, 75*ms, 125*ms) // counts as the first
	f(2, 100*ms, time.Second, 150*ms, 250*ms)
	f(3, 100*ms, time.Second, 300*ms, 500*ms)
	f(30, 100*ms, time.Second, 750*ms, 1250*ms)                // capped, then jittered
	f(200, 100*ms, 0, time.Duration(1<<61)*3/4, math.MaxInt64) // no cap: no overflow either
	f(math.MaxInt, time.Second, time.Minute, 45*time.Second, 75*time.Second)
	f(5, 0, time.Second, 0, 0)
	f(5, -time.Second, time.Second, 0, 0)
}

// TestExponentialJitters: the delays of one attempt are spread, so that peers failing
// together do not retry together.
func TestExponentialJitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[Exponential(3, time.Second, time.Minute)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("100 delays took only %d values: no jitter", len(seen))
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("unexpected error from a completed sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	began := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("unexpected error from a cancelled sleep; got %v; want context.Canceled", err)
	}
	if waited := time.Since(began); waited > time.Minute {
		t.Fatalf("the sleep outlived its context by %v", waited)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("a sleep on a done context returned %v; want context.Canceled", err)
	}
}
