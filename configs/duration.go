package configs

import (
	"fmt"
	"strings"
	"time"
)

const durationForm = `a duration such as "250ms", "10s" or "1h30m"`

// parseDuration parses a Go duration string and insists on a unit, so "10"
// is not silently ten nanoseconds.
func parseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	d, err := time.ParseDuration(t)
	if err != nil {
		if t != "" && strings.Trim(t, "0123456789.-+") == "" {
			return 0, fmt.Errorf("a duration needs a unit: expected %s", durationForm)
		}
		return 0, fmt.Errorf("expected %s", durationForm)
	}
	return d, nil
}

// ReplayWindow is how much already-delivered history the slot keeps so that
// past events can be delivered again (replay --from-lsn): either an amount of
// WAL (Bytes) or a time span (Duration). At most one is non-zero; both zero
// means off. In YAML it is a size ("256MiB", or an integer in bytes) or a
// duration ("1h").
type ReplayWindow struct {
	Bytes    Size
	Duration time.Duration
}

// IsZero reports whether the replay window is off.
func (w ReplayWindow) IsZero() bool { return w.Bytes == 0 && w.Duration == 0 }

// String returns the window as written in YAML ("256MiB", "1h0m0s"), or "0".
func (w ReplayWindow) String() string {
	switch {
	case w.Bytes != 0:
		return w.Bytes.String()
	case w.Duration != 0:
		return w.Duration.String()
	}
	return "0"
}

// parseReplayWindow parses a size or a duration string.
func parseReplayWindow(s string) (ReplayWindow, error) {
	if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
		if d < 0 {
			return ReplayWindow{}, fmt.Errorf("must not be negative")
		}
		return ReplayWindow{Duration: d}, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return ReplayWindow{}, fmt.Errorf(`expected a size such as "256MiB" or a duration such as "1h"`)
	}
	return ReplayWindow{Bytes: n}, nil
}
