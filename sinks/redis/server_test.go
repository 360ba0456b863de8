package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

func TestMain(m *testing.M) {
	SetClientLogger(zerolog.Nop()) // dial failures while a server is down are expected
	goleak.VerifyTestMain(m)
}

// server is a redis-server process on a free loopback port.
type server struct {
	*sinktest.Process
	addr string
	dir  string
}

// startRedis starts redis-server without persistence (unless args turn it on), with
// its working directory in a temp dir.
func startRedis(t *testing.T, args ...string) *server {
	t.Helper()
	port := sinktest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dir := t.TempDir()
	base := []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "yes"}
	p := sinktest.StartProcess(t, addr, "redis-server", append(base, args...)...)
	return &server{Process: p, addr: addr, dir: dir}
}

func (s *server) url() string { return "redis://" + s.addr }

// client returns a test client, closed with the test.
func (s *server) client(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// patient retries for a minute at most: enough to ride out a server restart.
var patient = pipeline.RetryPolicy{MaxAttempts: 600, Strategy: pipeline.BackoffFixed, Initial: 100 * time.Millisecond}

// killAfter wraps a sink and, once n deliveries have succeeded, kills the server and
// starts it again from a goroutine, so the restart happens mid-run whatever the speed
// of the machine. Deliveries after the n-th wait until the server is dead, so some of
// them fail for sure. wait blocks until the restart is over.
type killAfter struct {
	pipeline.Sink
	n       int64
	done    atomic.Int64
	failed  atomic.Int64
	tripped atomic.Bool
	once    sync.Once
	srv     interface {
		Kill()
		Start()
	}
	killed chan struct{}
	ended  chan struct{}
}

func newKillAfter(s pipeline.Sink, n int64, srv interface {
	Kill()
	Start()
}) *killAfter {
	return &killAfter{Sink: s, n: n, srv: srv, killed: make(chan struct{}), ended: make(chan struct{})}
}

func (k *killAfter) trip(delivered, failed int) {
	k.failed.Add(int64(failed))
	if k.done.Add(int64(delivered)) < k.n {
		return
	}
	k.tripped.Store(true)
	k.once.Do(func() {
		go func() {
			defer close(k.ended)
			k.srv.Kill()
			close(k.killed)
			time.Sleep(300 * time.Millisecond) // down for a while: deliveries fail meanwhile
			k.srv.Start()
		}()
	})
}

func (k *killAfter) gate() {
	if k.tripped.Load() {
		<-k.killed
	}
}

func (k *killAfter) Deliver(ctx context.Context, ev *decoder.Event) error {
	k.gate()
	err := k.Sink.Deliver(ctx, ev)
	if err == nil {
		k.trip(1, 0)
	} else {
		k.trip(0, 1)
	}
	return err
}

func (k *killAfter) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	k.gate()
	k.Sink.(pipeline.BatchSink).DeliverBatch(ctx, evs, errs)
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	k.trip(ok, len(errs)-ok)
}

// wait waits for the restart and checks that deliveries failed while the server was
// down.
func (k *killAfter) wait(t *testing.T) {
	t.Helper()
	select {
	case <-k.ended:
	case <-time.After(2 * time.Minute):
		t.Fatal("the server was not restarted")
	}
	if k.failed.Load() == 0 {
		t.Fatal("no delivery failed: the server was not killed mid-run")
	}
	t.Logf("%d failed attempts while the server was down", k.failed.Load())
}
