package service

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// onLog is what a test does when the service logs a message holding text.
type onLog struct {
	text string
	do   func()
}

// logScript is a zerolog hook that runs its steps in order, each on the first
// message holding its text after the previous step ran. A step runs in the goroutine
// that logs, before the call returns: the service goes on only once PostgreSQL is
// stopped or started, which makes the moment exact.
type logScript struct {
	mu    sync.Mutex
	steps []onLog
}

func (s *logScript) Run(_ *zerolog.Event, _ zerolog.Level, msg string) {
	s.mu.Lock()
	if len(s.steps) == 0 || !strings.Contains(msg, s.steps[0].text) {
		s.mu.Unlock()
		return
	}
	step := s.steps[0]
	s.steps = s.steps[1:]
	s.mu.Unlock() // the step may make the service log (the admin endpoint answering)
	step.do()
}

func (s *logScript) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.steps)
}

// TestStartRidesOutPostgresRestarts: PostgreSQL that goes away at any step of the
// start — right after it first answered, before the service's tables are prepared,
// once the lease is taken, before the session's preflight — is waited for like at the
// first connection: each attempt is logged, the instance is not ready meanwhile, and
// it streams once PostgreSQL is back; stopped while it waits, it ends cleanly
// (ErrStoppedWaitingForDB from New, nil from Run). Only the first ping used to be
// retried: the next step to meet the stopped server ended the start (a preflight
// error: exit code 3).
func TestStartRidesOutPostgresRestarts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres log:\n%s", srv.Log())
		}
		srv.Remove()
	})
	const away = "PostgreSQL cannot be reached"
	cases := []struct {
		name     string
		extra    string
		down     bool   // PostgreSQL is down when New starts
		stopAt   string // the message on which PostgreSQL stops; "": after New, before Run
		cancel   bool   // stop the service while it waits instead of starting PostgreSQL
		whyReady string // what /readyz says meanwhile ("": the admin endpoint is not up yet)
	}{
		{name: "after the first ping", down: true, stopAt: "PostgreSQL answers"},
		{name: "before the checkpoint tables", stopAt: "admin endpoint listening", whyReady: "waiting for PostgreSQL"},
		{name: "stopped before the checkpoint tables", stopAt: "admin endpoint listening", cancel: true, whyReady: "waiting for PostgreSQL"},
		{name: "once the lease is taken", extra: "failover: {enabled: true, lease_duration: 10m, renew_interval: 200ms}",
			stopAt: "took the slot's lease", whyReady: "waiting for PostgreSQL"},
		{name: "before the preflight", whyReady: "starting"},
		{name: "stopped before the preflight", cancel: true, whyReady: "starting"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := pgtest.NewDBOn(t, srv)
			db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
			cfg := testConfig(t, db, "node-a", c.extra)
			cfg.Admin.Listen = freeAddr(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop := func() {
				if err := srv.Stop(); err != nil {
					t.Error(err)
				}
			}
			start := func() {
				if err := srv.Start(); err != nil {
					t.Error(err)
				}
			}
			// While it waits: not ready, then PostgreSQL is back or the service stopped.
			waited := func() {
				if c.whyReady != "" {
					code, body := httpGet("http://" + cfg.Admin.Listen + "/readyz")
					if code != http.StatusServiceUnavailable || !strings.Contains(body, c.whyReady) {
						t.Errorf("unexpected /readyz while PostgreSQL cannot be reached; got %d %s; want 503 with %q", code, body, c.whyReady)
					}
				}
				if c.cancel {
					cancel()
					return
				}
				start()
			}
			script := &logScript{}
			if c.down {
				stop()
				script.steps = append(script.steps, onLog{away, start})
			}
			if c.stopAt != "" {
				script.steps = append(script.steps, onLog{c.stopAt, stop})
			}
			script.steps = append(script.steps, onLog{away, waited})
			defer func() {
				if c.cancel { // for the next case
					start()
				}
			}()
			log := testLogger(t).Hook(script)
			rec := &recorder{}
			svc, err := New(ctx, cfg, log, Options{Actions: testActions{cfg, rec}, Version: "test"})
			switch {
			case c.cancel && c.stopAt != "":
				if !errors.Is(err, ErrStoppedWaitingForDB) {
					t.Fatalf("New stopped while PostgreSQL could not be reached: %v; want ErrStoppedWaitingForDB", err)
				}
				return
			case err != nil:
				t.Fatalf("New: %v", err)
			}
			if c.stopAt == "" {
				stop()
			}
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			if !c.cancel {
				waitFor(t, time.Minute, "the service to be ready", func() bool {
					select {
					case err := <-done:
						t.Fatalf("Run returned before the service was ready: %v", err)
					default:
					}
					return svc.Ready() == nil
				})
				db.Exec(`INSERT INTO t VALUES (1, 0)`)
				waitFor(t, time.Minute, "the row delivered", func() bool { return len(rec.delivered()) == 1 })
				cancel()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Run did not return within a minute of its context's end")
			}
			if n := script.left(); n != 0 {
				t.Fatalf("%d steps of the script did not run", n)
			}
		})
	}
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// httpGet returns the status code and body of a GET (0 and the error when it fails).
func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
