package configs

import (
	"path/filepath"
	"testing"
)

// fileShape is the file action's key; every action of the examples is built with
// its sink's own Config by TestExamples in cmd/fraiseql-observers.
type fileShape struct {
	Path string `yaml:"path"`
}

func TestExamples(t *testing.T) {
	e := env{
		"DEMO_DSN":                       "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable",
		"DEMO_OUT":                       "/tmp/events.jsonl",
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
		t.Run(name, func(t *testing.T) {
			cfg, warns, err := Parse(name, readFile(t, filepath.Join("examples", name)), e.lookup)
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			if len(warns) != 0 {
				t.Fatalf("unexpected warnings: %v", warns)
			}
			if len(cfg.Observers) == 0 {
				t.Fatalf("unexpected configuration without observers")
			}
		})
	}

	cfg, _, _ := Parse("demo.yaml", readFile(t, "examples/demo.yaml"), e.lookup)
	var out fileShape
	if err := cfg.Observers[0].Actions[0].Decode(&out); err != nil || out.Path != "/tmp/events.jsonl" || !cfg.Observers[0].Wildcard {
		t.Fatalf("unexpected demo action; got %+v, %v", out, err)
	}
}
