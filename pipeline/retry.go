package pipeline

import (
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/backoff"
)

// Backoff names how the delay between attempts grows.
type Backoff uint8

// Backoff strategies, after the original system's retry configuration.
const (
	BackoffExponential Backoff = iota // initial × 2^(attempt−1), capped, ±25% jitter
	BackoffLinear                     // initial × attempt, capped
	BackoffFixed                      // initial
)

// ParseBackoff maps "exponential", "linear" and "fixed" to a Backoff.
func ParseBackoff(s string) (Backoff, error) {
	switch s {
	case "", "exponential":
		return BackoffExponential, nil
	case "linear":
		return BackoffLinear, nil
	case "fixed":
		return BackoffFixed, nil
	}
	return 0, fmt.Errorf("unknown backoff strategy %q (want exponential, linear or fixed)", s)
}

// RetryPolicy says how often and how patiently an action retries transient failures.
// The zero value means one attempt (no retry).
type RetryPolicy struct {
	MaxAttempts int // total attempts including the first; < 1 means 1
	Strategy    Backoff
	Initial     time.Duration
	Max         time.Duration // cap on one delay; 0 means no cap
}

// Attempts returns the number of attempts the policy allows (at least 1).
func (p RetryPolicy) Attempts() int {
	if p.MaxAttempts < 1 {
		return 1
	}
	return p.MaxAttempts
}

// Delay returns the wait before attempt number attempt+1, after attempt attempts
// failed (attempt ≥ 1). It is safe for concurrent use.
func (p RetryPolicy) Delay(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	var d time.Duration
	switch p.Strategy {
	case BackoffLinear:
		d = p.Initial * time.Duration(attempt)
		if attempt > 1 && d/time.Duration(attempt) != p.Initial { // overflow
			d = p.Max
		}
	case BackoffFixed:
		d = p.Initial
	default:
		// ±25% jitter so that keys failing together do not retry together.
		return backoff.Exponential(attempt, p.Initial, p.Max)
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return max(d, 0)
}
