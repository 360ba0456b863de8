package configs

import (
	"path/filepath"
	"testing"
)

// The option shapes below follow the action keys of the original system
// (docs/configuration.md#actions); they keep the examples honest until the
// sink packages decode the same actions with their own structs.
type (
	webhookShape struct {
		URL              string            `yaml:"url"`
		URLEnv           EnvRef            `yaml:"url_env"`
		Method           string            `yaml:"method"`
		Headers          map[string]string `yaml:"headers"`
		BodyTemplate     string            `yaml:"body_template"`
		SigningSecret    Secret            `yaml:"signing_secret"`
		SigningSecretEnv EnvRef            `yaml:"signing_secret_env"`
	}
	slackShape struct {
		WebhookURL      string `yaml:"webhook_url"`
		WebhookURLEnv   EnvRef `yaml:"webhook_url_env"`
		Channel         string `yaml:"channel"`
		MessageTemplate string `yaml:"message_template"`
	}
	emailShape struct {
		To              string `yaml:"to"`
		ToTemplate      string `yaml:"to_template"`
		Subject         string `yaml:"subject"`
		SubjectTemplate string `yaml:"subject_template"`
		BodyTemplate    string `yaml:"body_template"`
		ReplyTo         string `yaml:"reply_to"`
		SMTP            struct {
			Host        string `yaml:"host"`
			Port        int    `yaml:"port"`
			From        string `yaml:"from"`
			TLS         string `yaml:"tls"`
			UsernameEnv EnvRef `yaml:"username_env"`
			PasswordEnv EnvRef `yaml:"password_env"`
		} `yaml:"smtp"`
	}
	natsShape struct {
		URL            string `yaml:"url"`
		URLEnv         EnvRef `yaml:"url_env"`
		CredentialsEnv EnvRef `yaml:"credentials_env"`
		Subject        string `yaml:"subject"`
	}
	fileShape struct {
		Path string `yaml:"path"`
	}
)

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
		"NATS_CREDS":                     "/etc/nats/observer.creds",
	}
	shapes := map[string]func() any{
		"webhook": func() any { return new(webhookShape) },
		"slack":   func() any { return new(slackShape) },
		"email":   func() any { return new(emailShape) },
		"nats":    func() any { return new(natsShape) },
		"file":    func() any { return new(fileShape) },
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
			for _, o := range cfg.Observers {
				for _, a := range o.Actions {
					shape, ok := shapes[a.Type]
					if !ok {
						t.Fatalf("unexpected action type %q in %s", a.Type, a.ID)
					}
					if err := a.Decode(shape()); err != nil {
						t.Fatalf("unexpected error decoding %s:\n%v", a.ID, err)
					}
				}
			}
		})
	}

	cfg, _, _ := Parse("demo.yaml", readFile(t, "examples/demo.yaml"), e.lookup)
	var out fileShape
	if err := cfg.Observers[0].Actions[0].Decode(&out); err != nil || out.Path != "/tmp/events.jsonl" || !cfg.Observers[0].Wildcard {
		t.Fatalf("unexpected demo action; got %+v, %v", out, err)
	}
}
