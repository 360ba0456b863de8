package sinktest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// WantKeyError fails t unless err, the outcome of checking a sink's configuration,
// is what a test wants: nil when key is "", otherwise a *sinks.KeyError of key whose
// message contains msg and none of secrets.
func WantKeyError(t testing.TB, err error, key, msg string, secrets ...string) {
	t.Helper()
	if key == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ke *sinks.KeyError
	if !errors.As(err, &ke) || ke.Key != key || !strings.Contains(err.Error(), msg) {
		t.Fatalf("unexpected error; got %v; want key %s and %q", err, key, msg)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error shows a secret: %v", err)
		}
	}
}

// WantError fails t unless err is nil when want is "", or otherwise an error whose
// message contains want and none of secrets.
func WantError(t testing.TB, err error, want string, secrets ...string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error shows a secret: %v", err)
		}
	}
}

// WantClass fails t unless err is a delivery error of class (sinks.Class) that is
// retryable or not as retry says.
func WantClass(t testing.TB, err error, class string, retry bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("unexpected success; want a %s error", class)
	}
	if got := sinks.Class(err); got != class {
		t.Fatalf("unexpected class; got %q (%v); want %q", got, err, class)
	}
	if got := pipeline.Retryable(err); got != retry {
		t.Fatalf("unexpected retryable for %v; got %v; want %v", err, got, retry)
	}
}

// Deliver delivers ev through sink with a deadline a minute away and returns the
// outcome.
func Deliver(t testing.TB, sink pipeline.Sink, ev *decoder.Event) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return sink.Deliver(ctx, ev)
}

// NoDLQ fails t if d holds dead letters, naming the first one's error and class.
func NoDLQ(t testing.TB, d *DLQ) {
	t.Helper()
	if l := d.Snapshot(); len(l) > 0 {
		t.Fatalf("unexpected dead letters; got %d, first %v (class %s)", len(l), l[0].Err, sinks.Class(l[0].Err))
	}
}
