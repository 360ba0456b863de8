package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

// TestRequestShape: the default request is a POST of the exact event JSON with the
// event id as Idempotency-Key, JSON content type and the configured headers.
func TestRequestShape(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := loopback(r.URL + "/orders?src=cdc")
	cfg.Method = "put"
	cfg.Headers = map[string]string{"X-Source": "fraiseql-observers", "authorization": "Bearer t0k3n"}
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := sinktest.Events(3, 3)[2]
	if err := s.Deliver(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	q := r.requests()[0]
	if q.method != "PUT" || q.path != "/orders" || string(q.body) != string(ev.JSON()) {
		t.Fatalf("unexpected request; got %s %s %s", q.method, q.path, q.body)
	}
	for k, want := range map[string]string{
		"Idempotency-Key": ev.ID.String(), "Content-Type": "application/json", "X-Source": "fraiseql-observers",
		"Authorization": "Bearer t0k3n", "User-Agent": "fraiseql-observers",
	} {
		if got := q.header.Get(k); got != want {
			t.Fatalf("unexpected %s; got %q; want %q", k, got, want)
		}
	}
	if q.header.Get("X-FraiseQL-Signature-256") != "" || q.header.Get("Webhook-Signature") != "" {
		t.Fatal("unexpected signature header without a secret")
	}
	// A configured Content-Type wins.
	cfg.Headers = map[string]string{"content-type": "application/cloudevents+json"}
	s2, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Deliver(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if got := r.requests()[1].header.Values("Content-Type"); len(got) != 1 || got[0] != "application/cloudevents+json" {
		t.Fatalf("unexpected Content-Type; got %q", got)
	}
}

// TestBodyTemplateInjection: a row value crafted to break out of its JSON string
// stays one string.
func TestBodyTemplateInjection(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := loopback(r.URL)
	cfg.BodyTemplate = `{"id": {{ new.id }}, "status": "{{ new.status }}", "event": "{{ event.id }}"}`
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evil := `x", "admin": true, "y": "` + "\n\u2028</script>\\"
	ev := sinktest.Events(1, 1)[0]
	ev.New.Values[1] = mustJSON(t, evil)
	if err := s.Deliver(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	body := r.requests()[0].body
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("unexpected invalid JSON body %s: %v", body, err)
	}
	if len(got) != 3 || got["status"] != evil || got["event"] != ev.ID.String() || got["id"] != float64(0) {
		t.Fatalf("unexpected body; got %s", body)
	}
	// A template that cannot render this event is a permanent failure of the event.
	ev2 := sinktest.Events(1, 1)[0]
	ev2.New = &decoder.Row{Names: []string{"id"}, Values: []json.RawMessage{json.RawMessage(`1`)}}
	err = s.Deliver(t.Context(), ev2)
	if sinks.Class(err) != "template" || pipeline.Retryable(err) {
		t.Fatalf("unexpected error for a missing field; got %v", err)
	}
}

// TestDataBody: body_template '{{ data }}' sends the row alone, the original
// system's default body.
func TestDataBody(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := loopback(r.URL)
	cfg.BodyTemplate = "{{ data }}"
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Deliver(t.Context(), sinktest.Events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	if got := string(r.requests()[0].body); got != `{"id":0,"status":"pending","total":0.50}` {
		t.Fatalf("unexpected body; got %s", got)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBatching: with batch_size 10 the receiver gets JSON arrays of at most 10
// events, every event exactly once; a failed request is retried and the events still
// arrive; the standard signature covers the array and the batch id is stable.
func TestBatching(t *testing.T) {
	var mu sync.Mutex
	failed := map[string]bool{}
	r := newReceiver(t, func(key string, attempt int) step {
		mu.Lock()
		defer mu.Unlock()
		if len(failed) < 2 && !failed[key] { // fail the first two requests once
			failed[key] = true
			return step{status: 503}
		}
		return step{}
	})
	cfg := loopback(r.URL)
	cfg.BatchSize = 10
	cfg.SignatureFormat = FormatStandard
	cfg.SigningSecret = configs.NewSecret(secretA)
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs := sinktest.Events(200, 200)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{BatchSize: 25, Concurrency: 4,
		Retry: pipeline.RetryPolicy{MaxAttempts: 5, Strategy: pipeline.BackoffFixed, Initial: 10 * time.Millisecond}})
	if n := len(dlq.Snapshot()); n != 0 {
		t.Fatalf("unexpected dead letters; got %d", n)
	}
	delivered := map[string]int{}
	arrays := 0
	for _, q := range r.requests() {
		if err := verifyStandard(secretA, q.header, q.body, time.Now(), 5*time.Minute); err != nil {
			t.Fatalf("unexpected verification failure of a batch: %v", err)
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(q.body, &arr); err != nil || len(arr) == 0 || len(arr) > 10 {
			t.Fatalf("unexpected batch body (%d events): %v", len(arr), err)
		}
		ids := make([]string, len(arr))
		for i, raw := range arr {
			var ev struct{ ID string }
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			ids[i] = ev.ID
		}
		id := q.header.Get("Webhook-Id")
		if id != q.header.Get(HeaderIdempotencyKey) || len(arr) > 1 && !strings.HasPrefix(id, "batch_") || len(arr) == 1 && id != ids[0] {
			t.Fatalf("unexpected batch id %q for %d events", id, len(arr))
		}
		if q.status == 200 {
			for _, id := range ids {
				delivered[id]++
			}
		}
		arrays++
	}
	for _, ev := range evs {
		if delivered[ev.ID.String()] != 1 {
			t.Fatalf("unexpected deliveries of %s; got %d; want 1", ev.ID, delivered[ev.ID.String()])
		}
	}
	if arrays >= len(evs) {
		t.Fatalf("unexpected request count %d for %d events: no batching", arrays, len(evs))
	}
}

func TestBatchID(t *testing.T) {
	evs := sinktest.Events(5, 5)
	a := batchID(evs, []int{0, 1, 2})
	b := batchID([]*decoder.Event{evs[2], evs[0], evs[1]}, []int{0, 1, 2})
	if a != b || !strings.HasPrefix(a, "batch_") || len(a) != len("batch_")+32 || strings.Contains(a, ".") {
		t.Fatalf("unexpected batch ids %q and %q: want the same id for the same events", a, b)
	}
	if c := batchID(evs, []int{0, 1, 3}); c == a {
		t.Fatal("unexpected equal ids for different events")
	}
	if one := batchID(evs, []int{4}); one != evs[4].ID.String() {
		t.Fatalf("unexpected id of a one-event batch; got %q", one)
	}
}

// TestBatchTemplateFailure: an event whose template fails is dead-lettered alone;
// the others of its batch are delivered.
func TestBatchTemplateFailure(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := loopback(r.URL)
	cfg.BatchSize = 5
	cfg.BodyTemplate = `{"id": {{ new.id }}, "status": "{{ new.status }}"}`
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs := sinktest.Events(5, 5)
	evs[2].New = &decoder.Row{Names: []string{"id"}, Values: []json.RawMessage{json.RawMessage(`2`)}}
	errs := make([]error, len(evs))
	s.DeliverBatch(t.Context(), evs, errs)
	for i, err := range errs {
		if i == 2 {
			if sinks.Class(err) != "template" {
				t.Fatalf("unexpected error for the bad event; got %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("unexpected error for event %d: %v", i, err)
		}
	}
	var arr []map[string]any
	if err := json.Unmarshal(r.requests()[0].body, &arr); err != nil || len(arr) != 4 {
		t.Fatalf("unexpected batch body %s: %v", r.requests()[0].body, err)
	}
}

// TestGuardAtDelivery: a name that resolves to loopback is refused at dial time with
// a permanent ssrf_blocked failure; the listener accepts nothing; the counter counts.
func TestGuardAtDelivery(t *testing.T) {
	r := newReceiver(t, nil)
	port := r.Listener.Addr().(*net.TCPAddr).Port
	set := metrics.NewSet()
	res := resolverFunc(func(host string) []netip.Addr {
		if host == "hooks.test" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
		return nil
	})
	s, err := New(t.Context(), Config{URL: configs.NewSecret(fmt.Sprintf("http://hooks.test:%d/hook", port))}, sinks.Deps{Metrics: set, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dlq := sinktest.Run(t, s, sinktest.Events(3, 3), sinktest.RunOptions{})
	letters := dlq.Snapshot()
	if len(letters) != 3 {
		t.Fatalf("unexpected dead letters; got %d; want 3", len(letters))
	}
	for _, dl := range letters {
		var be *egress.BlockedError
		if sinks.Class(dl.Err) != "ssrf_blocked" || dl.Attempts != 1 || !errors.As(dl.Err, &be) {
			t.Fatalf("unexpected dead letter; got %v after %d attempts", dl.Err, dl.Attempts)
		}
	}
	if n := r.conns.Accepted(); n != 0 {
		t.Fatalf("unexpected accepted connections; got %d; want 0", n)
	}
	if n := set.GetOrCreateCounter(`observer_egress_blocked_total{action_type="webhook"}`).Get(); n != 3 {
		t.Fatalf("unexpected blocked counter; got %d; want 3", n)
	}
	// A literal loopback URL is refused when the sink is built.
	var ke *sinks.KeyError
	if _, err := New(t.Context(), Config{URL: configs.NewSecret(r.URL)}, sinks.Deps{}); !errors.As(err, &ke) || ke.Key != "url" {
		t.Fatalf("unexpected New error for a loopback URL; got %v", err)
	}
}

// TestRedirectToBlocked: an allow-listed first hop redirecting to a blocked address
// is refused (follow_redirects on), or not followed at all (off). The blocked target
// is a real listener on 127.0.0.2, reached through a literal address or a name; it
// accepts no connection.
func TestRedirectToBlocked(t *testing.T) {
	inner := newReceiverAt(t, "127.0.0.2:0", nil)
	innerPort := inner.Listener.Addr().(*net.TCPAddr).Port
	var location atomic.Value
	r := newReceiver(t, func(string, int) step {
		return step{status: 307, header: map[string]string{"Location": location.Load().(string)}}
	})
	res := resolverFunc(func(host string) []netip.Addr {
		if host == "inner.test" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}
		}
		return nil
	})
	for _, loc := range []string{
		fmt.Sprintf("http://inner.test:%d/", innerPort), // refused at dial time
		fmt.Sprintf("http://127.0.0.2:%d/", innerPort),  // refused before dialling
		"http://169.254.169.254/latest/meta-data/",
		"file:///etc/passwd",
	} {
		location.Store(loc)
		for _, follow := range []bool{true, false} {
			cfg := Config{URL: configs.NewSecret(r.URL), FollowRedirects: follow, Policy: egress.Policy{AllowedHosts: []string{"127.0.0.1"}}}
			s, err := New(t.Context(), cfg, sinks.Deps{Resolver: res})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Deliver(t.Context(), sinktest.Events(1, 1)[0])
			s.Close()
			want := "http_307"
			if follow {
				want = "ssrf_blocked"
			}
			if sinks.Class(err) != want || pipeline.Retryable(err) {
				t.Fatalf("unexpected result for a redirect to %s with follow_redirects=%v; got %v; want permanent %s", loc, follow, err, want)
			}
		}
	}
	if n := inner.conns.Accepted(); n != 0 {
		t.Fatalf("unexpected connections to the redirect target; got %d; want 0", n)
	}
	// The guard lets a redirect to an allowed target through, body and signature intact.
	location.Store(inner.URL + "/moved")
	cfg := Config{URL: configs.NewSecret(r.URL), FollowRedirects: true, SigningSecret: configs.NewSecret("k"), Policy: egress.Policy{AllowedHosts: []string{"127.0.0.1", "127.0.0.2"}}}
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := sinktest.Events(1, 1)[0]
	if err := s.Deliver(t.Context(), ev); err != nil {
		t.Fatalf("unexpected error following an allowed redirect: %v", err)
	}
	q := inner.requests()[0]
	if q.path != "/moved" || string(q.body) != string(ev.JSON()) || verifyFraiseQL("k", q.header, q.body, time.Now(), time.Minute) != nil {
		t.Fatalf("unexpected request after the redirect: %s %s", q.path, q.body)
	}
}

type resolverFunc func(host string) []netip.Addr

func (f resolverFunc) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a := f(host); len(a) > 0 {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
