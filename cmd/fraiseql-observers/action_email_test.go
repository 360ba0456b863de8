package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/internal/smtptest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// actionConfigHead puts the actions of a test on line 8 of test.yaml, at column 7.
const actionConfigHead = `source:
  dsn: postgres://observer@127.0.0.1:5432/app
entities: {Order: public.orders}
observers:
  o:
    entity: Order
    actions:
`

// buildTestActions parses a configuration whose actions list is actions (indented by
// six spaces, starting on line 8) and builds its observers; the log is returned.
func buildTestActions(t *testing.T, actions string, env map[string]string, validateOnly bool) ([]*pipeline.Observer, string, error) {
	t.Helper()
	var body strings.Builder
	for _, line := range strings.Split(strings.TrimRight(actions, "\n"), "\n") {
		body.WriteString("      " + line + "\n")
	}
	cfg, _, err := configs.Parse("test.yaml", []byte(actionConfigHead+body.String()), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		return nil, "", err
	}
	var log sinktest.LockedBuffer
	b := &builder{cfg: cfg, log: zerolog.New(&log), set: metrics.NewSet(), validateOnly: validateOnly}
	obs, err := b.observers(t.Context())
	t.Cleanup(func() {
		for _, o := range obs {
			for _, a := range o.Actions {
				if c, ok := a.Sink.(pipeline.Closer); ok {
					c.Close()
				}
			}
		}
	})
	return obs, log.String(), err
}

// wantConfigErrors checks that building actions fails with each of want, a
// "line:column: text" fragment of the error.
func wantConfigErrors(t *testing.T, actions string, env map[string]string, want ...string) {
	t.Helper()
	_, _, err := buildTestActions(t, actions, env, true)
	if err == nil {
		t.Fatalf("unexpected success for\n%s", actions)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("unexpected error for\n%s\ngot:\n%v\nwant a part: %s", actions, err, w)
		}
	}
}

func TestEmailActionDelivers(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "mailer", Password: "pw:with@odd%chars"})
	env := map[string]string{"SMTP_USERNAME": "mailer", "SMTP_PASSWORD": "pw:with@odd%chars"}
	obs, log, err := buildTestActions(t, `- type: email
  name: notify
  to: [ops@example.com, "Audit <audit@example.com>"]
  subject_template: "{{ entity }} {{ new.id }}"
  body_template: "Order {{ new.id }} is {{ new.status }}."
  reply_to: support@example.com
  smtp:
    host: `+srv.Host+`
    port: `+strconv.Itoa(srv.Port)+`
    from: Shop <no-reply@example.com>
    ca_file: `+srv.CAFile+`
    username_env: SMTP_USERNAME
    password_env: SMTP_PASSWORD
    timeout: 10s
`, env, false)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if log != "" {
		t.Fatalf("unexpected warnings: %s", log)
	}
	sink := obs[0].Actions[0].Sink
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sink.Deliver(ctx, sinktest.Events(1, 1)[0]); err != nil {
		t.Fatalf("unexpected delivery error: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].User != "mailer" || !msgs[0].TLS || strings.Join(msgs[0].To, ",") != "ops@example.com,audit@example.com" {
		t.Fatalf("unexpected messages: %+v", msgs)
	}
	if !bytes.Contains(msgs[0].Data, []byte("Message-ID: <0.3E8.1.o.notify@fraiseql-observers>")) {
		t.Fatalf("the Message-ID does not name the action:\n%s", msgs[0].Data)
	}
	if !bytes.Contains(msgs[0].Data, []byte("Subject: Order 0\r\n")) {
		t.Fatalf("the subject does not show the observer's entity:\n%s", msgs[0].Data)
	}
}

func TestEmailActionConfig(t *testing.T) {
	env := map[string]string{"SMTP_USERNAME": "mailer", "SMTP_PASSWORD": "pw", "EMPTY": ""}
	ok := func(actions string) string {
		t.Helper()
		_, log, err := buildTestActions(t, actions, env, true)
		if err != nil {
			t.Fatalf("unexpected error for\n%s\n%v", actions, err)
		}
		return log
	}
	// The production example's shape, and a plain loopback relay (no warning).
	if log := ok(`- type: email
  to_template: "{{ old.email }}"
  subject: "Your e-mail address was changed"
  body_template: "The address of your account is now {{ new.email }}."
  smtp: {host: smtp.internal, port: 587, from: no-reply@example.com, username_env: SMTP_USERNAME, password_env: SMTP_PASSWORD}
- type: email
  to: ops@example.com
  subject: s
  body_template: b
  smtp: {host: 127.0.0.1, port: 25, tls: none, from: a@example.com}
`); log != "" {
		t.Fatalf("unexpected warnings: %s", log)
	}
	if log := ok(`- type: email
  to: ops@example.com
  subject: s
  body_template: b
  smtp: {host: smtp.internal, tls: none, from: a@example.com}
`); !strings.Contains(log, "clear text") || !strings.Contains(log, "test.yaml:12:15") {
		t.Fatalf("no positioned warning for tls: none to a remote host; log: %s", log)
	}

	base := "- type: email\n  to: ops@example.com\n  subject: s\n  body_template: b\n"
	smtp := "  smtp: {host: smtp.example.com, from: a@example.com}\n"
	wantConfigErrors(t, base, env, "test.yaml:8:9: action o.0: smtp is required")
	wantConfigErrors(t, "- type: email\n  subject: s\n  body_template: b\n"+smtp, env, "test.yaml:8:9: action o.0: to: one of to and to_template is required")
	wantConfigErrors(t, base+"  to_template: x\n"+smtp, env, "test.yaml:12:22: action o.0: to_template: to and to_template are mutually exclusive")
	wantConfigErrors(t, base+"  subject_template: x\n"+smtp, env, "test.yaml:12:27: action o.0: subject_template: subject and subject_template")
	wantConfigErrors(t, "- type: email\n  to: ops@example.com\n  subject: s\n  body_template: \"Hi {{ new.id +\"\n"+smtp, env, "test.yaml:11:")
	wantConfigErrors(t, "- type: email\n  to: [1, 2]\n  subject: s\n  body_template: b\n"+smtp, env, "test.yaml:9:13: action o.0: to: must be an address")
	wantConfigErrors(t, "- type: email\n  to: not-an-address\n  subject: s\n  body_template: b\n"+smtp, env, "test.yaml:9:13: action o.0: to: invalid address list")
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com}\n", env, "test.yaml:12:15: action o.0: smtp.from: required")
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, tls: starttls}\n", env, "smtp.tls: must be start_tls, tls or none")
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, port: 0x10000}\n", env, "smtp.port: must be between 1 and 65535")
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, ca_file: /nonexistent.pem}\n", env, "test.yaml:12:15: action o.0: smtp.ca_file:")
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, tls: none, username_env: SMTP_USERNAME, password_env: SMTP_PASSWORD}\n", env,
		"smtp.tls: credentials would be sent in clear")
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, username_env: SMTP_USERNAME}\n", env, "smtp.username_env: needs smtp.password_env")
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, username_env: MISSING, password_env: EMPTY}\n", env,
		"environment variable MISSING is not set", "environment variable EMPTY is empty")
	// Secrets only from the environment: literal keys do not exist.
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, password: hunter2}\n", env, `unknown key "password"`)
	wantConfigErrors(t, base+"  smtp: {host: smtp.example.com, from: a@example.com, timeout: -1s}\n", env, "smtp.timeout: must not be negative")
}
