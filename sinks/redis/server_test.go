package redis

import (
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

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

// patient retries for a minute at most: enough to ride out a server restart.
var patient = pipeline.RetryPolicy{MaxAttempts: 600, Strategy: pipeline.BackoffFixed, Initial: 100 * time.Millisecond}
