package sinktest

import (
	"errors"
	"strings"
	"testing"

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
