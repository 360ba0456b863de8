package email

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/internal/smtptest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// config returns a configuration sending to srv, trusting its CA.
func config(srv *smtptest.Server) Config {
	return Config{
		To:           []string{"ops@example.com"},
		Subject:      "Order event",
		BodyTemplate: "Order {{ new.id }} is {{ new.status }}.",
		SMTP: SMTP{
			Host:    srv.Host,
			Port:    srv.Port,
			CAFile:  srv.CAFile,
			From:    "Shop <no-reply@example.com>",
			Timeout: 10 * time.Second,
		},
	}
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(t.Context(), cfg, sinks.Deps{ActionID: "orders.mail", Now: func() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatalf("unexpected error from New: %v", err)
	}
	return s
}

// withStatus returns one event whose new.status is the JSON string s.
func withStatus(s string) *decoder.Event {
	ev := sinktest.Events(1, 1)[0]
	b, _ := json.Marshal(s)
	ev.New.Values[1] = b
	return ev
}

func TestMessageReceived(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	cfg := config(srv)
	cfg.To = nil
	cfg.ToTemplate = "{{ new.status }}@example.com, Second <second@example.org>"
	cfg.Subject = ""
	cfg.SubjectTemplate = "Commande {{ new.id }} — état {{ new.status }}"
	cfg.BodyTemplate = "Bonjour,\nla commande {{ new.id }} est « {{ new.status }} ».\n.\nFin"
	cfg.ReplyTo = "support@example.com"
	ev := withStatus("alice")
	if err := sinktest.Deliver(t, newSink(t, cfg), ev); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("unexpected message count; got %d; want 1", len(msgs))
	}
	got := msgs[0]
	if !got.TLS {
		t.Fatalf("the message was not sent over TLS")
	}
	if got.From != "no-reply@example.com" {
		t.Fatalf("unexpected envelope sender; got %q", got.From)
	}
	if strings.Join(got.To, " ") != "alice@example.com second@example.org" {
		t.Fatalf("unexpected envelope recipients; got %q", got.To)
	}
	m, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatalf("the message does not parse: %v\n%s", err, got.Data)
	}
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	f := func(name, want string) {
		t.Helper()
		if got := m.Header.Get(name); got != want {
			t.Errorf("unexpected %s; got %q; want %q", name, got, want)
		}
	}
	f("From", `"Shop" <no-reply@example.com>`)
	f("To", `<alice@example.com>, "Second" <second@example.org>`)
	f("Reply-To", `<support@example.com>`)
	f("Message-Id", "<0.3E8.1.orders.mail@fraiseql-observers>")
	f("X-Fraiseql-Event-Id", "0/3E8:1")
	f("Mime-Version", "1.0")
	f("Content-Type", "text/plain; charset=utf-8")
	f("Content-Transfer-Encoding", "quoted-printable")
	f("Date", "Fri, 27 Nov 2026 12:00:00 +0000")
	if want := "Commande 0 — état alice"; subject != want {
		t.Errorf("unexpected subject; got %q; want %q", subject, want)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Bonjour,\r\nla commande 0 est « alice ».\r\n.\r\nFin\r\n"; string(body) != want {
		t.Errorf("unexpected body; got %q; want %q", body, want)
	}
	for _, line := range strings.Split(string(got.Data), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line longer than 78 characters: %q", line)
		}
	}
}

func TestASCIIBodyIs7bit(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	if err := sinktest.Deliver(t, newSink(t, config(srv)), withStatus("paid")); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(srv.Messages()[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("Content-Transfer-Encoding"); got != "7bit" {
		t.Fatalf("unexpected encoding; got %q; want 7bit", got)
	}
	body, _ := io.ReadAll(m.Body)
	if string(body) != "Order 0 is paid.\r\n" {
		t.Fatalf("unexpected body; got %q", body)
	}
}

func TestAuth(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "mailer", Password: "s3cr:et@%"})
	cfg := config(srv)
	cfg.Username, cfg.Password = configs.NewSecret("mailer"), configs.NewSecret("s3cr:et@%")
	if err := sinktest.Deliver(t, newSink(t, cfg), withStatus("paid")); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].User != "mailer" || !msgs[0].TLS {
		t.Fatalf("unexpected messages; got %+v; want one from user mailer over TLS", msgs)
	}

	cfg.Password = configs.NewSecret("wrong")
	err := sinktest.Deliver(t, newSink(t, cfg), withStatus("paid"))
	sinktest.WantClass(t, err, "smtp_535", false)
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

func TestStartTLSRequired(t *testing.T) {
	// The server offers AUTH in clear and no STARTTLS: nothing may be sent.
	srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.None, Username: "mailer", Password: "pw", AllowInsecureAuth: true})
	cfg := config(srv)
	cfg.Username, cfg.Password = configs.NewSecret("mailer"), configs.NewSecret("pw")
	err := sinktest.Deliver(t, newSink(t, cfg), withStatus("paid"))
	sinktest.WantClass(t, err, "starttls_unavailable", true)
	mails, data, auths := srv.Counts()
	if mails != 0 || data != 0 || auths != 0 {
		t.Fatalf("the client went on without TLS; got MAIL %d, DATA %d, AUTH %d; want none", mails, data, auths)
	}
}

func TestImplicitTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.Implicit, Username: "mailer", Password: "pw"})
	cfg := config(srv)
	cfg.TLS = TLSImplicit
	cfg.Username, cfg.Password = configs.NewSecret("mailer"), configs.NewSecret("pw")
	if err := sinktest.Deliver(t, newSink(t, cfg), withStatus("paid")); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || !msgs[0].TLS || msgs[0].User != "mailer" {
		t.Fatalf("unexpected messages; got %+v", msgs)
	}
}

func TestPlainLoopback(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: smtptest.None})
	cfg := config(srv)
	cfg.TLS, cfg.CAFile = TLSNone, ""
	if err := sinktest.Deliver(t, newSink(t, cfg), withStatus("paid")); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].TLS {
		t.Fatalf("unexpected messages; got %+v", msgs)
	}
}

func TestCertificateVerified(t *testing.T) {
	for _, mode := range []string{TLSStartTLS, TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{TLS: mode})
			cfg := config(srv)
			cfg.TLS = mode
			cfg.CAFile = "" // system roots do not know the test CA
			err := sinktest.Deliver(t, newSink(t, cfg), withStatus("paid"))
			sinktest.WantClass(t, err, "tls", true)
			if mails, _, _ := srv.Counts(); mails != 0 {
				t.Fatalf("MAIL was sent over an unverified connection")
			}
		})
	}
}

func TestRejectedRecipientGoesToDLQ(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(string) error { return smtptest.Error(550, "no such user here") }})
	dlq := sinktest.Run(t, newSink(t, config(srv)), sinktest.Events(3, 3), sinktest.RunOptions{})
	letters := dlq.Snapshot()
	if len(letters) != 3 {
		t.Fatalf("unexpected dead letters; got %d; want 3", len(letters))
	}
	for _, dl := range letters {
		if dl.Attempts != 1 || sinks.Class(dl.Err) != "smtp_550" {
			t.Fatalf("unexpected letter; got attempts %d, class %q (%v); want 1, smtp_550", dl.Attempts, sinks.Class(dl.Err), dl.Err)
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("unexpected messages accepted: %d", n)
	}
}

func TestTransientReplyRetried(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Data: func(n int) error {
		if n <= 2 {
			return smtptest.Error(451, "try again later")
		}
		return nil
	}})
	dlq := sinktest.Run(t, newSink(t, config(srv)), sinktest.Events(1, 1), sinktest.RunOptions{})
	if letters := dlq.Snapshot(); len(letters) != 0 {
		t.Fatalf("unexpected dead letters: %v", letters[0].Err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("unexpected message count; got %d; want 1", n)
	}
	if _, data, _ := srv.Counts(); data != 3 {
		t.Fatalf("unexpected DATA count; got %d; want 3 (two 451, then 250)", data)
	}
}

func TestServerStalls(t *testing.T) {
	t.Run("after DATA", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.Options{Stall: make(chan struct{})})
		cfg := config(srv)
		cfg.Timeout = 300 * time.Millisecond
		sinktest.WantClass(t, sinktest.Deliver(t, newSink(t, cfg), withStatus("paid")), "timeout", true)
	})
	t.Run("no greeting", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { // accept and say nothing
			defer close(done)
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		}()
		defer func() { l.Close(); <-done }()
		cfg := Config{SMTP: SMTP{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, From: "a@example.com", Timeout: 300 * time.Millisecond},
			To: []string{"b@example.com"}, Subject: "s", BodyTemplate: "b"}
		sinktest.WantClass(t, sinktest.Deliver(t, newSink(t, cfg), withStatus("paid")), "timeout", true)
	})
	t.Run("cancelled", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.Options{Stall: make(chan struct{})})
		s := newSink(t, config(srv))
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- s.Deliver(ctx, withStatus("paid")) }()
		for {
			if _, data, _ := srv.Counts(); data > 0 {
				break
			}
			if mails, _, _ := srv.Counts(); mails > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) || pipeline.Retryable(err) {
			t.Fatalf("unexpected error; got %v; want context.Canceled, not retryable", err)
		}
	})
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := Config{To: []string{"b@example.com"}, Subject: "s", BodyTemplate: "b", SMTP: SMTP{Host: "127.0.0.1", Port: port, From: "a@example.com"}}
	sinktest.WantClass(t, sinktest.Deliver(t, newSink(t, cfg), withStatus("paid")), "connection", true)
}

func TestRenderFailuresSendNothing(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := func(name string, mod func(*Config), status, class string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			cfg := config(srv)
			mod(&cfg)
			sinktest.WantClass(t, sinktest.Deliver(t, newSink(t, cfg), withStatus(status)), class, false)
		})
	}
	f("CRLF in subject", func(c *Config) { c.Subject, c.SubjectTemplate = "", "Order {{ new.status }}" },
		"x\r\nBcc: victim@example.net", "header_injection")
	f("LF in subject", func(c *Config) { c.Subject, c.SubjectTemplate = "", "Order {{ new.status }}" },
		"x\nBcc: victim@example.net", "header_injection")
	f("CRLF in recipients", func(c *Config) { c.To, c.ToTemplate = nil, "{{ new.status }}" },
		"a@example.com\r\nBcc: victim@example.net", "header_injection")
	f("invalid recipient", func(c *Config) { c.To, c.ToTemplate = nil, "{{ new.status }}" },
		"not an address", "invalid_address")
	f("empty recipient", func(c *Config) { c.To, c.ToTemplate = nil, "{{ new.status }}" },
		"", "invalid_address")
	f("missing field", func(c *Config) { c.BodyTemplate = "{{ new.nope }}" }, "paid", "template")
	if n := srv.Connections(); n != 0 {
		t.Fatalf("unexpected connections to the server: %d", n)
	}
}

func TestNewErrors(t *testing.T) {
	base := Config{To: []string{"b@example.com"}, Subject: "s", BodyTemplate: "b", SMTP: SMTP{Host: "smtp.example.com", From: "a@example.com"}}
	f := func(mod func(*Config), want string) {
		t.Helper()
		c := base
		mod(&c)
		_, err := New(t.Context(), c, sinks.Deps{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(func(c *Config) { c.Host = "" }, "smtp.host: required")
	f(func(c *Config) { c.TLS = "starttls" }, "smtp.tls: must be")
	f(func(c *Config) { c.Port = 70000 }, "smtp.port")
	f(func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }, "smtp.ca_file")
	f(func(c *Config) { c.Username = configs.NewSecret("u") }, "smtp.username_env: needs smtp.password_env")
	f(func(c *Config) {
		c.TLS, c.Username, c.Password = TLSNone, configs.NewSecret("u"), configs.NewSecret("p")
	}, "in clear")
	f(func(c *Config) { c.From = "" }, "smtp.from: required")
	f(func(c *Config) { c.From = "nope" }, "smtp.from: not an address")
	f(func(c *Config) { c.ToTemplate = "{{ x }}" }, "mutually exclusive")
	f(func(c *Config) { c.To = nil }, "one of to and to_template")
	f(func(c *Config) { c.To = []string{"x"} }, "to:")
	f(func(c *Config) { c.SubjectTemplate = "x" }, "mutually exclusive")
	f(func(c *Config) { c.Subject = "" }, "one of subject and subject_template")
	f(func(c *Config) { c.Subject = "a\r\nBcc: x@y" }, "subject:")
	f(func(c *Config) { c.BodyTemplate = "" }, "body_template: required")
	f(func(c *Config) { c.BodyTemplate = "{{ a +" }, "body_template")
	f(func(c *Config) { c.ReplyTo = "@@" }, "reply_to")
	f(func(c *Config) { c.Timeout = -time.Second }, "smtp.timeout")

	c := base
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Port != 587 || c.TLS != TLSStartTLS || c.Timeout != DefaultTimeout || c.HeloName != "localhost" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	c = base
	c.TLS = TLSImplicit
	c.Defaults()
	if err := c.Validate(); err != nil || c.Port != 465 {
		t.Fatalf("unexpected implicit TLS default port; got %d (%v); want 465", c.Port, err)
	}
}

func TestMessageID(t *testing.T) {
	f := func(ev, action, want string) {
		t.Helper()
		if got := messageID(ev, action); got != want {
			t.Fatalf("unexpected Message-ID; got %q; want %q", got, want)
		}
		if _, err := mail.ParseAddress(want); err != nil { // a msg-id has the shape of an angle-addr
			t.Fatalf("Message-ID %s is not a valid msg-id: %v", want, err)
		}
	}
	f("0/16B3748:3", "", "<0.16B3748.3@fraiseql-observers>")
	f("0/16B3748:3", "orders.mail", "<0.16B3748.3.orders.mail@fraiseql-observers>")
	f("0/16B3748:3", "a..b.", "<0.16B3748.3.a.b@fraiseql-observers>")
	f("FFFFFFFF/FFFFFFFF:4294967295", "x y\"<>@", "<FFFFFFFF.FFFFFFFF.4294967295.x.y@fraiseql-observers>")
}

func TestHeaderFolding(t *testing.T) {
	f := func(value string) {
		t.Helper()
		var b bytes.Buffer
		if err := writeTextHeader(&b, "Subject", value); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n") {
			if len(line) > 78 {
				t.Fatalf("line over 78 characters: %q", line)
			}
		}
		m, err := mail.ReadMessage(strings.NewReader(b.String() + "\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		dec := new(mime.WordDecoder)
		gotValue, err := dec.DecodeHeader(m.Header.Get("Subject"))
		if err != nil {
			t.Fatal(err)
		}
		if gotValue != value {
			t.Fatalf("unexpected round trip; got %q; want %q", gotValue, value)
		}
	}
	f("short")
	f(strings.Repeat("word ", 60) + "end")
	f(strings.Repeat("été ", 40) + "fin")
	f("日本語のテキスト" + strconv.Itoa(42))
	var b bytes.Buffer
	if err := writeTextHeader(&b, "Subject", strings.Repeat("x", 1000)); err == nil {
		t.Fatalf("a 1000-character word was accepted")
	}
}

func TestNeedsEncoding(t *testing.T) {
	f := func(body string, want bool) {
		t.Helper()
		if got := needsEncoding(crlf(body)); got != want {
			t.Fatalf("unexpected needsEncoding(%q); got %v; want %v", body, got, want)
		}
	}
	f("plain\ntext\n", false)
	f("tab\there", false)
	f("é", true)
	f("bare\rCR", false) // crlf turns it into a line break
	f("nul\x00", true)
	f(strings.Repeat("x", 998), false)
	f(strings.Repeat("x", 999), true)
}

// TestServerReplyRedacted: a server reply can echo the AUTH command with its
// base64 credentials, or the credentials themselves. Before it becomes the
// delivery error (logged, and stored in the DLQ's error column), AUTH lines,
// the user name and password in clear or base64, SASL blobs and key=value
// secrets are taken out; the reply code and the rest of the text stay.
func TestServerReplyRedacted(t *testing.T) {
	const user, pass = "mailer", "s3cr:et@%"
	blob := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	passB64 := base64.StdEncoding.EncodeToString([]byte(pass))
	cases := []struct {
		name  string
		opts  smtptest.Options
		class string
		keep  []string
	}{
		{"auth reply echoes the command", smtptest.Options{AuthReply: func(u, p string) error {
			return smtptest.Error(535, "5.7.8 Authentication credentials invalid\nreceived: AUTH PLAIN "+blob+"\nauth plain "+blob)
		}}, "smtp_535", []string{"server replied 535", "Authentication credentials invalid", "[AUTH line redacted]"}},
		{"auth reply echoes the credentials", smtptest.Options{AuthReply: func(u, p string) error {
			return smtptest.Error(535, "5.7.8 user "+u+" password "+p+" (b64 "+passB64+") token=abc123 rejected")
		}}, "smtp_535", []string{"server replied 535", "5.7.8 user [redacted] password [redacted] (b64 [redacted] [redacted] rejected"}},
		{"rcpt reply echoes a SASL blob", smtptest.Options{Rcpt: func(to string) error {
			return smtptest.Error(550, "5.1.1 <"+to+"> unknown; last client data "+blob)
		}}, "smtp_550", []string{"5.1.1 [address] unknown; last client data [redacted]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Username, c.opts.Password = user, pass
			srv := smtptest.Start(t, c.opts)
			cfg := config(srv)
			cfg.Username, cfg.Password = configs.NewSecret(user), configs.NewSecret(pass)
			dlq := sinktest.Run(t, newSink(t, cfg), sinktest.Events(1, 1), sinktest.RunOptions{})
			letters := dlq.Snapshot()
			if len(letters) != 1 || sinks.Class(letters[0].Err) != c.class {
				t.Fatalf("unexpected dead letters %+v; want one of class %s", letters, c.class)
			}
			stored := letters[0].Err.Error()
			for _, secret := range []string{pass, user, blob, passB64, "abc123", "PLAIN", "ops@example.com"} {
				if strings.Contains(stored, secret) {
					t.Fatalf("the stored error holds %q: %s", secret, stored)
				}
			}
			for _, k := range c.keep {
				if !strings.Contains(stored, k) {
					t.Fatalf("the stored error lacks %q: %s", k, stored)
				}
			}
		})
	}
}
