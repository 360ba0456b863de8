package nats

import (
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a nats-server process with JetStream on a free loopback port.
type server struct {
	*sinktest.Process
	url string
}

// startNATS starts nats-server with JetStream storing under a temp dir; extra is
// added to the configuration file.
func startNATS(t testing.TB, extra string) *server {
	t.Helper()
	p, url := sinktest.StartJetStream(t, extra)
	return &server{Process: p, url: url}
}

// jsClient connects a test client, closed with the test.
func jsClient(t testing.TB, url string, opts ...natsio.Option) jetstream.JetStream {
	t.Helper()
	nc, err := natsio.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// createStream creates stream CDC on cdc.> with a 2-minute duplicate window.
func createStream(t testing.TB, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	st, err := js.CreateStream(sinktest.Context(t), jetstream.StreamConfig{Name: "CDC", Subjects: []string{"cdc.>"},
		Duplicates: 2 * time.Minute, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// stored is one message read back from the stream.
type stored struct {
	subject, msgID string
	data           []byte
}

// readAll returns every message of the stream in order.
func readAll(t testing.TB, st jetstream.Stream) []stored {
	t.Helper()
	info, err := st.Info(sinktest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(sinktest.Context(t), seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		out = append(out, stored{subject: m.Subject, msgID: m.Header.Get(jetstream.MsgIDHeader), data: m.Data})
	}
	return out
}

// checkStored checks that every event is stored at least once under its id with its
// exact JSON and subject, that nothing else is, and returns the number of duplicates.
func checkStored(t testing.TB, msgs []stored, evs []*decoder.Event, subject string) int {
	t.Helper()
	want := map[string]*decoder.Event{}
	for _, ev := range evs {
		want[ev.ID.String()] = ev
	}
	seen := map[string]int{}
	for _, m := range msgs {
		ev := want[m.msgID]
		if ev == nil {
			t.Fatalf("unexpected message with Nats-Msg-Id %q", m.msgID)
		}
		if string(m.data) != string(ev.JSON()) || m.subject != subject {
			t.Fatalf("unexpected message for %s; got %s on %s; want %s on %s", m.msgID, m.data, m.subject, ev.JSON(), subject)
		}
		seen[m.msgID]++
	}
	dups := 0
	for id := range want {
		if seen[id] == 0 {
			t.Fatalf("event %s is missing from the stream", id)
		}
		dups += seen[id] - 1
	}
	return dups
}

func openSink(t testing.TB, cfg Config, set *metrics.Set) *Sink {
	t.Helper()
	s, err := New(sinktest.Context(t), cfg, sinks.Deps{ActionID: "test.nats", Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// noClose hides the sink's Close from the pipeline, so a sink outlives one Run.
type noClose struct{ pipeline.BatchSink }
