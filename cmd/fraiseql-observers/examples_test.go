package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// TestExamples: the example configurations build with every action's own Config,
// as start checks them before it connects, with their environment set; and
// without it, as validate-config reads them offline, every variable is a warning
// and nothing else is wrong.
func TestExamples(t *testing.T) {
	env := map[string]string{
		"DEMO_DSN":                       "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable",
		"DEMO_OUT":                       filepath.Join(t.TempDir(), "events.jsonl"),
		"FRAISEQL_OBSERVERS_DSN":         "postgres://observer@db.internal:5432/app?sslmode=verify-full",
		"FRAISEQL_OBSERVERS_ADMIN_TOKEN": "token",
		"FULFILMENT_WEBHOOK_URL":         "https://fulfilment.example.com/hooks/orders",
		"FULFILMENT_WEBHOOK_SECRET":      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"SLACK_WEBHOOK_URL":              "https://hooks.slack.com/services/T0/B0/X",
		"SMTP_USERNAME":                  "mailer",
		"SMTP_PASSWORD":                  "pw",
		"NATS_URL":                       "nats://nats.internal:4222",
		"NATS_TOKEN":                     "nats-token",
	}
	for _, name := range []string{"demo.yaml", "production.yaml"} {
		path := filepath.Join("..", "..", "configs", "examples", name)
		t.Run(name, func(t *testing.T) {
			for _, deferEnv := range []bool{false, true} {
				lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
				if deferEnv {
					lookup = func(string) (string, bool) { return "", false }
				}
				cfg, warns, err := configs.LoadWith(path, configs.Options{Lookup: lookup, DeferEnv: deferEnv})
				if err != nil {
					t.Fatalf("unexpected error (deferEnv=%v):\n%v", deferEnv, err)
				}
				var log sinktest.LockedBuffer
				b := &builder{cfg: cfg, log: zerolog.New(&log), set: metrics.NewSet(), validateOnly: true}
				if _, err := b.observers(t.Context()); err != nil {
					t.Fatalf("unexpected error building the actions (deferEnv=%v):\n%v", deferEnv, err)
				}
				warns = append(warns, b.warnings...)
				for _, u := range cfg.Unset() {
					warns = append(warns, configs.Warning{Pos: u.Pos, Msg: u.String()})
				}
				for _, w := range warns {
					if !deferEnv || !strings.Contains(w.Msg, "is not set") {
						t.Fatalf("unexpected warning (deferEnv=%v): %v", deferEnv, w)
					}
				}
				if deferEnv != (len(warns) > 0) {
					t.Fatalf("unexpected warnings (deferEnv=%v): %v", deferEnv, warns)
				}
				if log.String() != "" {
					t.Fatalf("unexpected log lines (deferEnv=%v):\n%s", deferEnv, log.String())
				}
			}
		})
	}
}
