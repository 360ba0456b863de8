package webhook

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 24 bytes
	secretB = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
	secretC = "whsec_c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhIQ=="
)

// stepClock returns a clock that starts now and advances one second per reading,
// so that every attempt gets its own timestamp.
func stepClock() func() time.Time {
	start := time.Now()
	var n atomic.Int64
	return func() time.Time { return start.Add(time.Duration(n.Add(1)) * time.Second) }
}

func loopback(url string) Config {
	return Config{URL: configs.NewSecret(url), Policy: egress.Policy{AllowedHosts: []string{"127.0.0.1/32"}}}
}

// TestStandardWebhooks: a receiver written from the Standard Webhooks spec verifies
// every attempt; the receiver fails the first attempts, and webhook-id stays the
// event id while webhook-timestamp changes per attempt; tampering with the body,
// the timestamp or the id fails verification.
func TestStandardWebhooks(t *testing.T) {
	r := newReceiver(t, func(_ string, attempt int) step {
		if attempt < 2 {
			return step{status: 500}
		}
		return step{}
	})
	cfg := loopback(r.URL + "/hook")
	cfg.SignatureFormat = FormatStandard
	cfg.SigningSecret = configs.NewSecret(secretA)
	s, err := New(t.Context(), cfg, sinks.Deps{Now: stepClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs := sinktest.Events(6, 3)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{Retry: pipeline.RetryPolicy{MaxAttempts: 5, Strategy: pipeline.BackoffFixed, Initial: 10 * time.Millisecond}})
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters; got %d; want 0", n)
	}
	reqs := r.requests()
	if len(reqs) != 3*len(evs) {
		t.Fatalf("unexpected request count; got %d; want %d", len(reqs), 3*len(evs))
	}
	byID := map[string][]request{}
	for _, q := range reqs {
		if err := verifyStandard(secretA, q.header, q.body, time.Now(), 5*time.Minute); err != nil {
			t.Fatalf("unexpected verification failure: %v", err)
		}
		id := q.header.Get("webhook-id")
		if q.header.Get(HeaderIdempotencyKey) != id {
			t.Fatalf("unexpected Idempotency-Key; got %q; want %q", q.header.Get(HeaderIdempotencyKey), id)
		}
		byID[id] = append(byID[id], q)
	}
	for _, ev := range evs {
		attempts := byID[ev.ID.String()]
		if len(attempts) != 3 {
			t.Fatalf("unexpected attempts for %s; got %d; want 3 with the same webhook-id", ev.ID, len(attempts))
		}
		seen := map[string]bool{}
		for _, q := range attempts {
			ts := q.header.Get("webhook-timestamp")
			if seen[ts] {
				t.Fatalf("unexpected repeated webhook-timestamp %s across attempts of %s", ts, ev.ID)
			}
			seen[ts] = true
			if string(q.body) != string(ev.JSON()) {
				t.Fatalf("unexpected body; got %s; want the event JSON", q.body)
			}
		}
	}

	q := reqs[0]
	tamper := func(what string, mod func(h http.Header, body []byte) []byte) {
		t.Helper()
		h := q.header.Clone()
		body := mod(h, append([]byte(nil), q.body...))
		if err := verifyStandard(secretA, h, body, time.Now(), 5*time.Minute); err == nil {
			t.Fatalf("unexpected verification success after tampering with the %s", what)
		}
	}
	tamper("body", func(_ http.Header, b []byte) []byte { return append(b[:len(b)-1], ' ', '}') })
	tamper("body (one byte)", func(_ http.Header, b []byte) []byte { b[10] ^= 1; return b })
	tamper("timestamp", func(h http.Header, b []byte) []byte {
		h.Set("webhook-timestamp", bumpInt(h.Get("webhook-timestamp")))
		return b
	})
	tamper("id", func(h http.Header, b []byte) []byte { h.Set("webhook-id", "0/1:999"); return b })
	tamper("signature", func(h http.Header, b []byte) []byte {
		h.Set("webhook-signature", "v1,"+strings.Repeat("A", 44))
		return b
	})
	if err := verifyStandard(secretB, q.header, q.body, time.Now(), 5*time.Minute); err == nil {
		t.Fatal("unexpected verification success with another secret")
	}
	// A replayed request outside the 5-minute tolerance fails.
	if err := verifyStandard(secretA, q.header, q.body, time.Now().Add(10*time.Minute), 5*time.Minute); err == nil {
		t.Fatal("unexpected verification success 10 minutes later")
	}
}

func bumpInt(s string) string {
	b := []byte(s)
	b[len(b)-1] = '0' + (b[len(b)-1]-'0'+1)%10
	return string(b)
}

// TestStandardRotation: with two secrets configured, webhook-signature carries two
// space-delimited v1 signatures and a receiver holding either secret verifies.
func TestStandardRotation(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := loopback(r.URL)
	cfg.SignatureFormat = FormatStandard
	cfg.SigningSecrets = []configs.Secret{configs.NewSecret(secretB), configs.NewSecret(secretA)}
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Deliver(t.Context(), sinktest.Events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	q := r.requests()[0]
	sigs := strings.Fields(q.header.Get("webhook-signature"))
	if len(sigs) != 2 || !strings.HasPrefix(sigs[0], "v1,") || !strings.HasPrefix(sigs[1], "v1,") {
		t.Fatalf("unexpected webhook-signature; got %q; want two v1 signatures", q.header.Get("webhook-signature"))
	}
	for _, sec := range []string{secretA, secretB} {
		if err := verifyStandard(sec, q.header, q.body, time.Now(), 5*time.Minute); err != nil {
			t.Fatalf("unexpected verification failure with one of the rotated secrets: %v", err)
		}
	}
	if err := verifyStandard(secretC, q.header, q.body, time.Now(), 5*time.Minute); err == nil {
		t.Fatal("unexpected verification success with a secret not configured")
	}
}

// TestFraiseQLSignature: the original system's header verifies over "<t>.<body>";
// tampering fails; a rotation gives one v1 per secret.
func TestFraiseQLSignature(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := loopback(r.URL)
	cfg.SigningSecret = configs.NewSecret("plain-secret-bytes")
	cfg.BodyTemplate = `{"order": {{ new.id }}, "status": "{{ new.status }}"}`
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Deliver(t.Context(), sinktest.Events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	q := r.requests()[0]
	if string(q.body) != `{"order": 0, "status": "pending"}` {
		t.Fatalf("unexpected body; got %s", q.body)
	}
	if !strings.HasPrefix(q.header.Get("X-FraiseQL-Signature-256"), "t=") || q.header.Get("webhook-signature") != "" {
		t.Fatalf("unexpected signature headers: %v", q.header)
	}
	now := time.Now()
	if err := verifyFraiseQL("plain-secret-bytes", q.header, q.body, now, 5*time.Minute); err != nil {
		t.Fatalf("unexpected verification failure: %v", err)
	}
	if err := verifyFraiseQL("plain-secret-bytes", q.header, append(q.body, ' '), now, 5*time.Minute); err == nil {
		t.Fatal("unexpected verification success with a tampered body")
	}
	h := q.header.Clone()
	v := h.Get("X-FraiseQL-Signature-256")
	ts, rest, _ := strings.Cut(strings.TrimPrefix(v, "t="), ",")
	h.Set("X-FraiseQL-Signature-256", "t="+bumpInt(ts)+","+rest)
	if err := verifyFraiseQL("plain-secret-bytes", h, q.body, now, 5*time.Minute); err == nil {
		t.Fatal("unexpected verification success with a tampered timestamp")
	}
	if err := verifyFraiseQL("other", q.header, q.body, now, 5*time.Minute); err == nil {
		t.Fatal("unexpected verification success with another secret")
	}

	cfg.SigningSecret = configs.NewSecret("")
	cfg.SigningSecrets = []configs.Secret{configs.NewSecret("new-secret"), configs.NewSecret("old-secret")}
	s2, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Deliver(t.Context(), sinktest.Events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	q = r.requests()[1]
	if n := strings.Count(q.header.Get("X-FraiseQL-Signature-256"), ",v1="); n != 2 {
		t.Fatalf("unexpected signature count; got %d; want 2", n)
	}
	for _, sec := range []string{"new-secret", "old-secret"} {
		if err := verifyFraiseQL(sec, q.header, q.body, now, 5*time.Minute); err != nil {
			t.Fatalf("unexpected verification failure with a rotated secret: %v", err)
		}
	}
}
