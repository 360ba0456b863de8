package transport

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	natssink "github.com/fraiseql/fraiseql-observers/sinks/nats"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	goleak.VerifyTestMain(m)
}

// startNATS starts a nats-server with JetStream on a free loopback port; its store
// survives a Restart.
func startNATS(t testing.TB) (*sinktest.Process, string) {
	t.Helper()
	return sinktest.StartJetStream(t, "")
}

// startCluster starts a three-node JetStream cluster on loopback and returns the
// nodes and a URL list naming all of them.
func startCluster(t testing.TB) ([]*sinktest.Process, string) {
	t.Helper()
	c := sinktest.StartJetStreamCluster(t)
	return c.Nodes, c.URL
}

// testConfig is a nats transport configuration for url.
func testConfig(url string) Config {
	return Config{Type: TypeNATS, Connection: natssink.Connection{URL: configs.NewSecret(url)},
		Partitions: 4, MaxPending: 256, Timeout: 2 * time.Second, LeaseTTL: 2 * time.Second, AckWait: 5 * time.Second}
}

// connect connects a client, closed with the test, and ensures the stream (retrying
// while a fresh cluster elects its meta leader).
func connect(t testing.TB, cfg Config) (*Client, jetstream.Stream) {
	t.Helper()
	c, err := Connect(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := sinktest.Context(t)
	for {
		st, err := c.EnsureStream(ctx)
		if err == nil {
			return c, st
		}
		if ctx.Err() != nil {
			t.Fatalf("ensure stream: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stored reads every message of the stream, in stream order.
func storedMsgs(t testing.TB, st jetstream.Stream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := sinktest.Context(t)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // removed (work queue) or deleted
		}
		out = append(out, m)
	}
	return out
}
