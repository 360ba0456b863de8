package webhook

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// TestClassification drives one event per case through a real pipeline into a
// receiver scripted per attempt, and checks what was delivered, what was
// dead-lettered with which class, and how many attempts each took.
func TestClassification(t *testing.T) {
	type want struct {
		delivered bool
		class     string // of the dead letter
		attempts  int    // requests seen by the receiver, and the letter's Attempts
	}
	seq := func(steps ...step) func(string, int) step {
		return func(_ string, attempt int) step {
			if attempt < len(steps) {
				return steps[attempt]
			}
			return step{}
		}
	}
	always := func(st step) func(string, int) step { return func(string, int) step { return st } }
	cases := []struct {
		name     string
		script   func(string, int) step
		timeout  time.Duration
		attempts int // MaxAttempts
		want     want
		minGap   time.Duration // between the first two attempts
	}{
		{name: "500x3 then 200", script: seq(step{status: 500}, step{status: 500}, step{status: 500}), want: want{delivered: true, attempts: 4}},
		{name: "503 Retry-After 2", script: seq(step{status: 503, header: map[string]string{"Retry-After": "2"}}), want: want{delivered: true, attempts: 2}, minGap: 2 * time.Second},
		{name: "429 Retry-After 1", script: seq(step{status: 429, header: map[string]string{"Retry-After": "1"}}), want: want{delivered: true, attempts: 2}, minGap: time.Second},
		{name: "429 Retry-After date", script: func(_ string, attempt int) step {
			if attempt == 0 {
				return step{status: 429, header: map[string]string{"Retry-After": time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}}
			}
			return step{}
		}, want: want{delivered: true, attempts: 2}, minGap: time.Second},
		{name: "408 then 200", script: seq(step{status: 408}), want: want{delivered: true, attempts: 2}},
		{name: "502 always", script: always(step{status: 502}), attempts: 3, want: want{class: "http_502", attempts: 3}},
		{name: "400", script: always(step{status: 400}), want: want{class: "http_400", attempts: 1}},
		{name: "401", script: always(step{status: 401}), want: want{class: "http_401", attempts: 1}},
		{name: "404 with Retry-After", script: always(step{status: 404, header: map[string]string{"Retry-After": "1"}}), want: want{class: "http_404", attempts: 1}},
		{name: "410", script: always(step{status: 410}), want: want{class: "http_410", attempts: 1}},
		{name: "413", script: always(step{status: 413}), want: want{class: "http_413", attempts: 1}},
		{name: "302 not followed", script: always(step{status: 302, header: map[string]string{"Location": "/elsewhere"}}), want: want{class: "http_302", attempts: 1}},
		{name: "stall past timeout", script: always(step{stall: true}), timeout: 200 * time.Millisecond, attempts: 2, want: want{class: "timeout", attempts: 2}},
		{name: "stall then 200", script: seq(step{stall: true}), timeout: 200 * time.Millisecond, want: want{delivered: true, attempts: 2}},
		{name: "200 with 10 MB body", script: always(step{body: 10 << 20}), want: want{delivered: true, attempts: 1}},
		{name: "200 with endless body", script: always(step{body: -1}), want: want{delivered: true, attempts: 1}},
		{name: "malformed status line then 200", script: seq(step{raw: "HTTP/1.1 abc\r\n\r\n"}), want: want{delivered: true, attempts: 2}},
		{name: "malformed status line always", script: always(step{raw: "HTTP/1.1 abc\r\n\r\n"}), attempts: 2, want: want{class: "transport", attempts: 2}},
		{name: "garbage instead of HTTP", script: always(step{raw: "\x00\x01 not http at all\r\n\r\n"}), attempts: 2, want: want{class: "transport", attempts: 2}},
		{name: "connection reset then 200", script: seq(step{reset: true}), want: want{delivered: true, attempts: 2}},
		{name: "connection reset always", script: always(step{reset: true}), attempts: 3, want: want{class: "connection", attempts: 3}},
		{name: "closed without answer", script: always(step{hangup: true}), attempts: 2, want: want{attempts: 2, class: "connection"}},
		{name: "closed without answer then 200", script: seq(step{hangup: true}), want: want{delivered: true, attempts: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t, tc.script)
			cfg := loopback(r.URL + "/hook")
			cfg.Timeout = tc.timeout
			s, err := New(t.Context(), cfg, sinks.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if tc.attempts == 0 {
				tc.attempts = 5
			}
			ev := sinktest.Events(1, 1)
			dlq := sinktest.Run(t, s, ev, sinktest.RunOptions{
				Retry: pipeline.RetryPolicy{MaxAttempts: tc.attempts, Strategy: pipeline.BackoffFixed, Initial: 20 * time.Millisecond},
			})
			letters := dlq.Snapshot()
			reqs := r.requests()
			if len(reqs) != tc.want.attempts {
				t.Fatalf("unexpected requests at the receiver; got %d; want %d", len(reqs), tc.want.attempts)
			}
			for _, q := range reqs {
				if got := q.header.Get(HeaderIdempotencyKey); got != ev[0].ID.String() {
					t.Fatalf("unexpected Idempotency-Key; got %q; want %q", got, ev[0].ID)
				}
				if q.path != "/hook" {
					t.Fatalf("unexpected path %q: a redirect was followed", q.path)
				}
			}
			if tc.want.delivered {
				if len(letters) != 0 {
					t.Fatalf("unexpected dead letter: %v", letters[0].Err)
				}
			} else {
				if len(letters) != 1 {
					t.Fatalf("unexpected dead letters; got %d; want 1", len(letters))
				}
				dl := letters[0]
				t.Logf("dead letter after %d attempts: %v", dl.Attempts, dl.Err)
				if sinks.Class(dl.Err) != tc.want.class || dl.Attempts != tc.want.attempts {
					t.Fatalf("unexpected dead letter; got class %q after %d attempts (%v); want %q after %d",
						sinks.Class(dl.Err), dl.Attempts, dl.Err, tc.want.class, tc.want.attempts)
				}
			}
			if tc.minGap > 0 {
				if gap := reqs[1].at.Sub(reqs[0].at); gap < tc.minGap {
					t.Fatalf("unexpected retry before Retry-After; got %v; want at least %v", gap, tc.minGap)
				}
			}
		})
	}
}

// TestDeliverClasses checks the error Deliver returns, without the pipeline.
func TestDeliverClasses(t *testing.T) {
	r := newReceiver(t, func(key string, _ int) step {
		var code int
		fmt.Sscan(key, &code)
		return step{status: code, header: map[string]string{"Retry-After": "7"}}
	})
	s, err := New(t.Context(), loopback(r.URL), sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		code  int
		class string
		retry bool
		after time.Duration
	}{{503, "http_503", true, 7 * time.Second}, {422, "http_422", false, 0}, {204, "", false, 0}} {
		err := s.send(t.Context(), []byte("{}"), fmt.Sprint(tc.code))
		if tc.class == "" {
			if err != nil {
				t.Fatalf("unexpected error for %d: %v", tc.code, err)
			}
			continue
		}
		if sinks.Class(err) != tc.class || pipeline.Retryable(err) != tc.retry || pipeline.RetryAfter(err) != tc.after {
			t.Fatalf("unexpected error for %d; got %v (class %s, retry %v, after %v)", tc.code, err, sinks.Class(err), pipeline.Retryable(err), pipeline.RetryAfter(err))
		}
	}
	// A cancelled context is not a delivery failure to retry.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Deliver(ctx, sinktest.Events(1, 1)[0]); err == nil || pipeline.Retryable(err) {
		t.Fatalf("unexpected result with a cancelled context; got %v", err)
	}
}
