package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestConfig(t *testing.T) {
	f := func(cfg Config, key, want string) {
		t.Helper()
		sinktest.WantKeyError(t, cfg.Validate(), key, want, "s3cret")
	}
	ok := Config{URL: configs.NewSecret("nats://127.0.0.1:4222"), Subject: subject}
	f(ok, "", "")
	with := func(m func(*Config)) Config { c := ok; m(&c); return c }
	f(with(func(c *Config) { c.URL = configs.NewSecret("tls://a:4222, nats://u:s3cret@b:4222") }), "", "")
	f(with(func(c *Config) { c.URL = configs.NewSecret("") }), "url", "required")
	f(with(func(c *Config) { c.URL = configs.NewSecret("http://a:4222") }), "url", "scheme")
	f(with(func(c *Config) { c.URL = configs.NewSecret("nats://u:s3cret@a:4222/x") }), "url", "path or query")
	f(with(func(c *Config) { c.URL = configs.NewSecret("nats://u:s3cret@a:4222\x7f") }), "url", "not a valid URL")
	f(with(func(c *Config) { c.Subject = "" }), "subject", "required")
	f(with(func(c *Config) { c.Subject = "cdc.>" }), "subject", "wildcard")
	f(with(func(c *Config) { c.Subject = "cdc..x" }), "subject", "empty token")
	f(with(func(c *Config) { c.Subject = "cdc x" }), "subject", "whitespace")
	f(with(func(c *Config) { c.Subject = "cdc.{{ new.id " }), "subject", "unclosed")
	f(with(func(c *Config) { c.Stream = "a.b" }), "stream", "stream name")
	f(with(func(c *Config) { c.Timeout = -1 }), "timeout", "negative")
	f(with(func(c *Config) {
		c.Token, c.User, c.Password = configs.NewSecret("s3cret"), configs.NewSecret("u"), configs.NewSecret("s3cret")
	}), "creds_file", "one way")
	f(with(func(c *Config) { c.User = configs.NewSecret("u") }), "user_env", "go together")
	f(with(func(c *Config) { c.Token = configs.NewSecret("s3cret") }), "", "")

	c := ok
	c.Defaults()
	if err := c.Validate(); err != nil || c.Timeout != DefaultTimeout || c.DialTimeout != DefaultDialTimeout {
		t.Fatalf("unexpected defaults; got %+v, %v", c, err)
	}
}

func TestCheckSubject(t *testing.T) {
	f := func(s string, ok bool) {
		t.Helper()
		if err := CheckSubject(s); (err == nil) != ok {
			t.Fatalf("unexpected CheckSubject(%q); got %v; want ok=%v", s, err, ok)
		}
	}
	f("cdc.orders.INSERT", true)
	f("a", true)
	f("a-b_c.d$e", true)
	f("", false)
	f(".a", false)
	f("a.", false)
	f("a..b", false)
	f("a b", false)
	f("a\tb", false)
	f("a\x00b", false)
	f("a.*", false)
	f("a.>", false)
	f("a*", false)
}

func TestSubjectMatches(t *testing.T) {
	f := func(filter, subject string, want bool) {
		t.Helper()
		if got := subjectMatches(filter, subject); got != want {
			t.Fatalf("unexpected subjectMatches(%q, %q); got %v; want %v", filter, subject, got, want)
		}
	}
	f("cdc.>", "cdc.orders", true)
	f("cdc.>", "cdc.orders.INSERT", true)
	f("cdc.>", "cdc", false)
	f("cdc.*", "cdc.orders", true)
	f("cdc.*", "cdc.orders.INSERT", false)
	f("cdc.*.INSERT", "cdc.orders.INSERT", true)
	f("cdc.orders", "cdc.orders", true)
	f("cdc.orders", "cdc.order", false)
	f(">", "a.b", true)
}

func TestClassify(t *testing.T) {
	f := func(err error, class string, retry bool) {
		t.Helper()
		got := Classify(fmt.Errorf("publish: %w", err))
		if sinks.Class(got) != class || pipeline.Retryable(got) != retry || !errors.Is(got, err) {
			t.Fatalf("unexpected classification of %v; got %s retry=%v; want %s retry=%v", err, sinks.Class(got), pipeline.Retryable(got), class, retry)
		}
	}
	f(natsio.ErrMaxPayload, "too_large", false)
	f(&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum}, "too_large", false)
	f(&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, "js_10071", false)
	f(&jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}, "js_10060", false)
	f(&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, "js_10077", true)
	f(&jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"}, "js_10023", true)
	f(jetstream.ErrNoStreamResponse, "no_stream", true)
	f(natsio.ErrNoResponders, "no_stream", true)
	f(jetstream.ErrAsyncPublishTimeout, "timeout", true)
	f(context.DeadlineExceeded, "timeout", true)
	f(natsio.ErrTimeout, "timeout", true)
	f(jetstream.ErrTooManyStalledMsgs, "backpressure", true)
	f(jetstream.ErrInvalidJSAck, "bad_ack", true)
	f(natsio.ErrBadSubject, "bad_subject", false)
	f(natsio.ErrConnectionClosed, "connection", true)
	f(natsio.ErrDisconnected, "connection", true)
	f(natsio.ErrConnectionReconnecting, "connection", true)
	f(natsio.ErrReconnectBufExceeded, "connection", true)
	f(io.EOF, "connection", true)
	if err := Classify(context.Canceled); err != context.Canceled { //nolint:errorlint // identity: Classify returns context.Canceled itself, unwrapped
		t.Fatalf("unexpected classification of context.Canceled; got %v", err)
	}
	if Classify(nil) != nil {
		t.Fatal("Classify(nil) is not nil")
	}
}
