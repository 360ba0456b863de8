package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// replyErr is an error reply as the client returns it.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

var _ goredis.Error = replyErr("")

func TestClassify(t *testing.T) {
	f := func(err error, class string, retry bool) {
		t.Helper()
		got := Classify(fmt.Errorf("xadd: %w", err))
		if sinks.Class(got) != class || pipeline.Retryable(got) != retry || !errors.Is(got, err) {
			t.Fatalf("unexpected classification of %v; got %s retry=%v; want %s retry=%v", err, sinks.Class(got), pipeline.Retryable(got), class, retry)
		}
	}
	f(replyErr("LOADING Redis is loading the dataset in memory"), "loading", true)
	f(replyErr("BUSY Redis is busy running a script."), "busy", true)
	f(replyErr("TRYAGAIN Multiple keys request during rehashing of slot"), "tryagain", true)
	f(replyErr("CLUSTERDOWN The cluster is down"), "clusterdown", true)
	f(replyErr("MASTERDOWN Link with MASTER is down"), "masterdown", true)
	f(replyErr("READONLY You can't write against a read only replica."), "readonly", true)
	f(replyErr("OOM command not allowed when used memory > 'maxmemory'."), "oom", true)
	f(replyErr("MISCONF Redis is configured to save RDB snapshots"), "misconf", true)
	f(replyErr("NOREPLICAS Not enough good replicas to write."), "noreplicas", true)
	f(replyErr("ERR max number of clients reached"), "maxclients", true)
	f(replyErr("WRONGTYPE Operation against a key holding the wrong kind of value"), "wrongtype", false)
	f(replyErr("NOSCRIPT No matching script."), "noscript", false)
	f(replyErr("ERR syntax error"), "redis_err", false)
	f(replyErr("NOAUTH Authentication required."), "auth", false)
	f(replyErr("WRONGPASS invalid username-password pair"), "auth", false)
	f(replyErr("NOPERM this user has no permissions"), "auth", false)
	f(replyErr("MOVED 3999 127.0.0.1:6381"), "cluster", false)
	f(replyErr("SOMETHINGNEW reason"), "redis_error", false)
	f(context.DeadlineExceeded, "timeout", true)
	f(goredis.ErrPoolTimeout, "timeout", true)
	f(&net.OpError{Op: "read", Err: timeoutErr{}}, "timeout", true)
	f(goredis.ErrClosed, "closed", true)
	f(io.EOF, "connection", true)
	f(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection", true)
	f(syscall.ECONNRESET, "connection", true)

	if err := Classify(context.Canceled); err != context.Canceled { //nolint:errorlint // identity: Classify returns context.Canceled itself, unwrapped
		t.Fatalf("unexpected classification of context.Canceled; got %v", err)
	}
	if Classify(nil) != nil {
		t.Fatal("Classify(nil) is not nil")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }
