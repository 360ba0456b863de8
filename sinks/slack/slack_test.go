package slack

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// slackServer is a real HTTP server that accepts incoming-webhook posts as Slack
// documents them: a JSON body with "text" (required) and optional "channel";
// answers "ok", or an error code with 400/404/410, or 429 with Retry-After.
type slackServer struct {
	*httptest.Server
	mu     sync.Mutex
	posts  []message
	answer func(m message, n int) (int, string, map[string]string)
}

func newSlack(t *testing.T, answer func(m message, n int) (int, string, map[string]string)) *slackServer {
	s := &slackServer{answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m message
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || dec.Decode(&m) != nil {
			w.WriteHeader(400)
			io.WriteString(w, "invalid_payload")
			return
		}
		if m.Text == "" {
			w.WriteHeader(400)
			io.WriteString(w, "no_text")
			return
		}
		s.mu.Lock()
		s.posts = append(s.posts, m)
		n := len(s.posts)
		s.mu.Unlock()
		code, text, hdr := 200, "ok", map[string]string(nil)
		if s.answer != nil {
			code, text, hdr = s.answer(m, n)
		}
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(code)
		io.WriteString(w, text)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *slackServer) received() []message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]message(nil), s.posts...)
}

func cfgFor(s *slackServer) Config {
	return Config{WebhookURL: configs.NewSecret(s.URL + "/services/T000/B000/XXXXSECRETXXXX"), Policy: egress.Policy{AllowedHosts: []string{"127.0.0.1"}}}
}

func TestDefaultMessage(t *testing.T) {
	srv := newSlack(t, nil)
	s, err := New(t.Context(), cfgFor(srv), sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := sinktest.Events(3, 3)[2]
	if err := s.Deliver(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	got := srv.received()
	if len(got) != 1 || got[0].Text != "INSERT on public.orders (event "+ev.ID.String()+")" || got[0].Channel != "" {
		t.Fatalf("unexpected message; got %+v", got)
	}
	m := &decoder.Event{Op: decoder.OpMessage, Message: &decoder.Message{Prefix: "audit"}}
	if got := Summary(m); got != "MESSAGE audit (event 0/0:0)" {
		t.Fatalf("unexpected summary of a message event; got %q", got)
	}
}

// TestTemplateAndChannel: the payload is JSON built by encoding/json, so a value
// with quotes, newlines or braces stays inside the text.
func TestTemplateAndChannel(t *testing.T) {
	srv := newSlack(t, nil)
	cfg := cfgFor(srv)
	cfg.Channel = "#ops"
	cfg.MessageTemplate = "Order {{ new.id }} is {{ new.status }} ({{ entity }})"
	s, err := New(t.Context(), cfg, sinks.Deps{Templates: sinks.Templates{Meta: eval.Meta{Entity: "Order"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := sinktest.Events(1, 1)[0]
	evil := "x\", \"channel\": \"#general\"}\n{"
	b, _ := json.Marshal(evil)
	ev.New.Values[1] = b
	if err := s.Deliver(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	got := srv.received()[0]
	if got.Text != "Order 0 is "+evil+" (Order)" || got.Channel != "#ops" {
		t.Fatalf("unexpected message; got %+v", got)
	}
}

func TestClassification(t *testing.T) {
	f := func(code int, body string, hdr map[string]string, class string, retry bool, after time.Duration) {
		t.Helper()
		srv := newSlack(t, func(message, int) (int, string, map[string]string) { return code, body, hdr })
		s, err := New(t.Context(), cfgFor(srv), sinks.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		err = s.Deliver(t.Context(), sinktest.Events(1, 1)[0])
		if class == "" {
			if err != nil {
				t.Fatalf("unexpected error for %d: %v", code, err)
			}
			return
		}
		if sinks.Class(err) != class || pipeline.Retryable(err) != retry || pipeline.RetryAfter(err) != after {
			t.Fatalf("unexpected error for %d %s; got %v (class %s, retry %v, after %v)", code, body, err, sinks.Class(err), pipeline.Retryable(err), pipeline.RetryAfter(err))
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "/services/") {
			t.Fatalf("unexpected webhook URL path in error %q", err)
		}
		if slackCode.MatchString(body) && !strings.Contains(err.Error(), body) {
			t.Fatalf("unexpected error without Slack's code %q: %v", body, err)
		}
	}
	f(200, "ok", nil, "", false, 0)
	f(400, "invalid_payload", nil, "http_400", false, 0)
	f(400, "no_text", nil, "http_400", false, 0)
	f(403, "action_prohibited", nil, "http_403", false, 0)
	f(404, "channel_not_found", nil, "http_404", false, 0)
	f(410, "channel_is_archived", nil, "http_410", false, 0)
	f(429, "rate_limited", map[string]string{"Retry-After": "30"}, "http_429", true, 30*time.Second)
	f(500, "rollup_error", nil, "http_500", true, 0)
	f(503, "<html>echo of the message: secret row value</html>", nil, "http_503", true, 0)
	f(302, "", map[string]string{"Location": "https://example.com/"}, "http_302", false, 0)
}

// TestThroughPipeline: 429 then ok delivers after a retry; a 404 channel_not_found
// goes to the dead-letter queue after one attempt.
func TestThroughPipeline(t *testing.T) {
	var limited atomic.Bool
	srv := newSlack(t, func(m message, n int) (int, string, map[string]string) {
		switch {
		case strings.Contains(m.Text, ":1)") && limited.CompareAndSwap(false, true):
			return 429, "rate_limited", map[string]string{"Retry-After": "1"}
		case strings.Contains(m.Text, ":2)"):
			return 404, "channel_not_found", nil
		}
		return 200, "ok", nil
	})
	s, err := New(t.Context(), cfgFor(srv), sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs := sinktest.Events(2, 2)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{Concurrency: 1, Retry: pipeline.RetryPolicy{MaxAttempts: 3, Strategy: pipeline.BackoffFixed, Initial: 10 * time.Millisecond}})
	letters := dlq.Snapshot()
	if len(letters) != 1 || letters[0].Event != evs[1] || letters[0].Attempts != 1 || sinks.Class(letters[0].Err) != "http_404" {
		t.Fatalf("unexpected dead letters: %+v", letters)
	}
	got := srv.received()
	if len(got) != 3 { // 429, ok, 404
		t.Fatalf("unexpected posts; got %d; want 3", len(got))
	}
}

func TestValidate(t *testing.T) {
	f := func(c Config, key, msg string) {
		t.Helper()
		sinktest.WantKeyError(t, c.Validate(), key, msg, "T000")
	}
	u := configs.NewSecret("https://hooks.slack.com/services/T000/B000/XXXX")
	f(Config{WebhookURL: u}, "", "")
	f(Config{}, "webhook_url", "required")
	f(Config{WebhookURL: configs.NewSecret("ftp://hooks.slack.com/services/T000")}, "webhook_url", "only http and https")
	f(Config{WebhookURL: configs.NewSecret("http://127.0.0.1/services/T000")}, "webhook_url", "loopback")
	f(Config{WebhookURL: u, MessageTemplate: "{{ new.x "}, "message_template", "unclosed")
	f(Config{WebhookURL: u, Timeout: -1}, "timeout", "negative")
	f(Config{WebhookURL: u, Channel: strings.Repeat("c", MaxChannelLen+1)}, "channel", "at most")
	c := Config{WebhookURL: u}
	c.Defaults()
	if err := c.Validate(); err != nil || c.Timeout != DefaultTimeout {
		t.Fatalf("unexpected default timeout %v", c.Timeout)
	}
}
