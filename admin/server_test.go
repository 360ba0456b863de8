package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

type fakeService struct {
	ready     atomic.Pointer[error] // nil: ready
	replayed  ReplayRequest
	snapshot  SnapshotRequest
	cancelled int64
}

func (f *fakeService) Ready() error {
	if p := f.ready.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *fakeService) Status(context.Context) (any, error) {
	return map[string]string{"leader": "listener-1"}, nil
}

func (f *fakeService) RecentEvents(n int) any {
	out := make([]pipeline.DebugEvent, 0, n)
	for i := 0; i < n && i < 3; i++ {
		out = append(out, pipeline.DebugEvent{ID: "0/10:" + string(rune('1'+i)), Table: "t"})
	}
	return out
}

func (f *fakeService) FindEvent(id string) (any, bool) {
	if id == "0/10:1" {
		return pipeline.DebugEvent{ID: id}, true
	}
	return nil, false
}

func (f *fakeService) CacheStats() any { return map[string]int{"hits": 7} }

func (f *fakeService) Replay(_ context.Context, req ReplayRequest) (any, error) {
	f.replayed = req
	if req.From == 1 {
		return nil, &Error{Status: http.StatusConflict, Code: "replay_too_old", Msg: "too old", Detail: map[string]string{"oldest_lsn": "0/100"}}
	}
	return map[string][]string{"actions": {"o.a"}}, nil
}

func (f *fakeService) StartSnapshot(_ context.Context, req SnapshotRequest) (any, error) {
	f.snapshot = req
	if req.Where == "bad" {
		return nil, &Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: "--where: no"}
	}
	return map[string]any{"id": 1, "table": req.Table}, nil
}

func (f *fakeService) Snapshots(context.Context) (any, error) {
	return []map[string]any{{"id": 1}}, nil
}

func (f *fakeService) Snapshot(_ context.Context, id int64) (any, error) {
	if id != 1 {
		return nil, &Error{Status: http.StatusNotFound, Code: "snapshot_not_found", Msg: "no snapshot 2"}
	}
	return map[string]any{"id": id}, nil
}

func (f *fakeService) CancelSnapshot(_ context.Context, id int64) (any, error) {
	f.cancelled = id
	return map[string]any{"id": id, "state": "cancelled"}, nil
}

func newTestServer(t *testing.T, token string) (*httptest.Server, *fakeService, *metrics.Set) {
	t.Helper()
	f := &fakeService{}
	set := metrics.NewSet()
	set.GetOrCreateCounter(`observer_events_processed_total{listener_id="listener-1"}`).Add(3)
	s, err := New(Options{Token: token, Metrics: set, Ready: f, Status: f, Events: f, Cache: f, Replay: f, Snapshots: f})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, f, set
}

func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTokenAuth(t *testing.T) {
	ts, _, _ := newTestServer(t, "s3cret")
	f := func(path, token string, want int) {
		t.Helper()
		if got, body := do(t, "GET", ts.URL+path, token, ""); got != want {
			t.Fatalf("GET %s with token %q: unexpected status; got %d; want %d\n%s", path, token, got, want, body)
		}
	}
	for _, p := range []string{"/metrics", "/status", "/debug/events", "/cache/stats"} {
		f(p, "", http.StatusUnauthorized)
		f(p, "wrong", http.StatusUnauthorized)
		f(p, "s3cret-and-more", http.StatusUnauthorized)
		f(p, "s3cret", http.StatusOK)
	}
	// The scheme is case-insensitive (RFC 9110 section 11.1); other schemes and an
	// empty token are refused.
	for header, want := range map[string]int{
		"Bearer s3cret": http.StatusOK, "bearer s3cret": http.StatusOK, "BEARER s3cret": http.StatusOK,
		"bEaReR   s3cret ": http.StatusOK, "Bearer": http.StatusUnauthorized, "Bearer ": http.StatusUnauthorized,
		"Basic s3cret": http.StatusUnauthorized, "Bearers3cret": http.StatusUnauthorized, "s3cret": http.StatusUnauthorized,
	} {
		req, _ := http.NewRequest("GET", ts.URL+"/status", nil)
		req.Header.Set("Authorization", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("Authorization %q: unexpected status; got %d; want %d", header, resp.StatusCode, want)
		}
	}
	// Probes reveal nothing and need no token.
	f("/healthz", "", http.StatusOK)
	f("/readyz", "", http.StatusOK)
	if code, body := do(t, "POST", ts.URL+"/replay", "", `{"from_lsn":"0/10"}`); code != http.StatusUnauthorized || !strings.Contains(body, `"code": "unauthorized"`) {
		t.Fatalf("unexpected answer to a replay without token; got %d %s", code, body)
	}
}

func TestPprof(t *testing.T) {
	ts, _, _ := newTestServer(t, "tok")
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/symbol"} {
		if code, body := do(t, "GET", ts.URL+p, "", ""); code != http.StatusUnauthorized {
			t.Fatalf("GET %s without token: unexpected status; got %d; want 401\n%s", p, code, body)
		}
	}
	if code, body := do(t, "GET", ts.URL+"/debug/pprof/", "tok", ""); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("unexpected profile index; got %d\n%s", code, body)
	}
	if code, body := do(t, "GET", ts.URL+"/debug/pprof/goroutine?debug=1", "tok", ""); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("unexpected goroutine profile; got %d\n%s", code, body)
	}
	// A CPU profile is gzipped protobuf.
	if code, body := do(t, "GET", ts.URL+"/debug/pprof/profile?seconds=1", "tok", ""); code != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Fatalf("unexpected CPU profile; got %d, %d bytes", code, len(body))
	}
	// The command line may carry secrets: not served.
	if code, body := do(t, "GET", ts.URL+"/debug/pprof/cmdline", "tok", ""); code != http.StatusNotFound {
		t.Fatalf("the command line was served; got %d\n%s", code, body)
	}
}

func TestNoTokenMeansOpen(t *testing.T) {
	ts, _, _ := newTestServer(t, "")
	if code, body := do(t, "GET", ts.URL+"/metrics", "", ""); code != http.StatusOK ||
		!strings.Contains(body, `observer_events_processed_total{listener_id="listener-1"} 3`) || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("unexpected /metrics; got %d\n%s", code, body)
	}
}

func TestReadyz(t *testing.T) {
	ts, f, _ := newTestServer(t, "tok")
	notReady := errors.New("reconnecting")
	f.ready.Store(&notReady)
	code, body := do(t, "GET", ts.URL+"/readyz", "", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"reason": "reconnecting"`) {
		t.Fatalf("unexpected /readyz while not streaming; got %d %s", code, body)
	}
	f.ready.Store(nil)
	if code, body := do(t, "GET", ts.URL+"/readyz", "", ""); code != http.StatusOK {
		t.Fatalf("unexpected /readyz while streaming; got %d %s", code, body)
	}
}

func TestDebugEventsAndReplay(t *testing.T) {
	ts, f, _ := newTestServer(t, "")
	code, body := do(t, "GET", ts.URL+"/debug/events?history=2", "", "")
	var evs []pipeline.DebugEvent
	if code != http.StatusOK || json.Unmarshal([]byte(body), &evs) != nil || len(evs) != 2 {
		t.Fatalf("unexpected history; got %d %s", code, body)
	}
	for _, q := range []string{"0", "-1", "x", "10001"} {
		if code, _ := do(t, "GET", ts.URL+"/debug/events?history="+q, "", ""); code != http.StatusBadRequest {
			t.Fatalf("history=%s: unexpected status %d; want 400", q, code)
		}
	}
	if code, _ := do(t, "GET", ts.URL+"/debug/events/0/10:1", "", ""); code != http.StatusNotFound {
		// an id holds a slash: it must be escaped by clients
		t.Fatalf("unescaped id: unexpected status %d", code)
	}
	if code, body := do(t, "GET", ts.URL+"/debug/events/0%2F10:1", "", ""); code != http.StatusOK {
		t.Fatalf("unexpected status for a remembered event; got %d %s", code, body)
	}
	if code, body := do(t, "GET", ts.URL+"/debug/events/0%2F10:9", "", ""); code != http.StatusNotFound || !strings.Contains(body, "event_not_remembered") {
		t.Fatalf("unexpected answer for a forgotten event; got %d %s", code, body)
	}
	if code, body := do(t, "POST", ts.URL+"/replay", "", `{"from_lsn":"0/20","to_lsn":"0/30","observer":"o"}`); code != http.StatusOK || f.replayed.From != 0x20 || f.replayed.To != 0x30 {
		t.Fatalf("unexpected replay; got %d %s, request %+v", code, body, f.replayed)
	}
	if code, body := do(t, "POST", ts.URL+"/replay", "", `{"from_lsn":"0/1"}`); code != http.StatusConflict || !strings.Contains(body, `"oldest_lsn": "0/100"`) {
		t.Fatalf("unexpected replay error; got %d %s", code, body)
	}
	for _, b := range []string{`{}`, `{"from_lsn":"nope"}`, `{"from_lsn":"0/1","extra":1}`, `not json`} {
		if code, _ := do(t, "POST", ts.URL+"/replay", "", b); code != http.StatusBadRequest {
			t.Fatalf("replay body %s: unexpected status %d; want 400", b, code)
		}
	}
	if code, _ := do(t, "GET", ts.URL+"/replay", "", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /replay: unexpected status %d; want 405", code)
	}
}

func TestSnapshots(t *testing.T) {
	ts, f, _ := newTestServer(t, "secret")
	if code, _ := do(t, "POST", ts.URL+"/snapshots", "", `{"table":"public.orders"}`); code != http.StatusUnauthorized {
		t.Fatalf("POST /snapshots without the token: unexpected status %d; want 401", code)
	}
	code, body := do(t, "POST", ts.URL+"/snapshots", "secret", `{"table":"public.orders","where":"id > 5","observer":"o"}`)
	if code != http.StatusOK || f.snapshot != (SnapshotRequest{Table: "public.orders", Where: "id > 5", Observer: "o"}) {
		t.Fatalf("unexpected snapshot start; got %d %s, request %+v", code, body, f.snapshot)
	}
	for _, b := range []string{`{}`, `{"table":"t","extra":1}`, `nope`} {
		if code, _ := do(t, "POST", ts.URL+"/snapshots", "secret", b); code != http.StatusBadRequest {
			t.Fatalf("snapshot body %s: unexpected status %d; want 400", b, code)
		}
	}
	if code, body := do(t, "POST", ts.URL+"/snapshots", "secret", `{"table":"t","where":"bad"}`); code != http.StatusBadRequest || !strings.Contains(body, "--where: no") {
		t.Fatalf("unexpected refusal; got %d %s", code, body)
	}
	if code, _ := do(t, "GET", ts.URL+"/snapshots", "secret", ""); code != http.StatusOK {
		t.Fatalf("GET /snapshots: unexpected status %d", code)
	}
	if code, _ := do(t, "GET", ts.URL+"/snapshots/2", "secret", ""); code != http.StatusNotFound {
		t.Fatalf("GET /snapshots/2: unexpected status %d; want 404", code)
	}
	if code, _ := do(t, "GET", ts.URL+"/snapshots/x", "secret", ""); code != http.StatusBadRequest {
		t.Fatalf("GET /snapshots/x: unexpected status %d; want 400", code)
	}
	if code, _ := do(t, "POST", ts.URL+"/snapshots/1/cancel", "secret", ""); code != http.StatusOK || f.cancelled != 1 {
		t.Fatalf("cancel: unexpected status %d, cancelled %d", code, f.cancelled)
	}
}

func TestDefaultListenIsLoopback(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.Listen != "127.0.0.1:9187" {
		t.Fatalf("unexpected default listen address; got %q; want 127.0.0.1:9187", s.opts.Listen)
	}
	if _, err := New(Options{Listen: "nonsense"}); err == nil {
		t.Fatalf("unexpected success with an invalid listen address")
	}
}

func TestServeShutsDown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Fatalf("listening on %v, not loopback", ip)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("unexpected error from Serve; got %v", err)
	}
}

// TestTLS: with a certificate and key the endpoint speaks HTTPS only; a client
// trusting the CA gets answers, a plain HTTP request does not, a renewed certificate
// is served without a restart, and an unreadable key is an error at New.
func TestTLS(t *testing.T) {
	certs := sinktest.NewCerts(t)
	s, err := New(Options{Listen: "127.0.0.1:0", TLSCertFile: certs.CertFile, TLSKeyFile: certs.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	pem, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("unexpected status over HTTPS; got %d", resp.StatusCode)
	}
	plain := &http.Client{Transport: &http.Transport{}}
	defer plain.CloseIdleConnections()
	if resp, err := plain.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the endpoint answered plain HTTP")
		}
	}

	// A renewed certificate is served without a restart.
	renewed := sinktest.NewCerts(t)
	for _, f := range [][2]string{{renewed.CertFile, certs.CertFile}, {renewed.KeyFile, certs.KeyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	renewedRoots := x509.NewCertPool()
	pem, _ = os.ReadFile(renewed.CAFile)
	renewedRoots.AppendCertsFromPEM(pem)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: renewedRoots}}}
		resp, err := c.Get("https://" + ln.Addr().String() + "/healthz")
		c.CloseIdleConnections()
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	if _, err := New(Options{Listen: "127.0.0.1:0", TLSCertFile: certs.CertFile, TLSKeyFile: certs.CAFile}); err == nil || !strings.Contains(err.Error(), "admin: TLS certificate") {
		t.Fatalf("unexpected result for a wrong key; got %v", err)
	}
}
