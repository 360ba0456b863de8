package transport

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	natsio "github.com/nats-io/nats.go"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// memPositions keeps settled positions in memory, as checkpoint.Partitions keeps
// them in PostgreSQL: a position only rises.
type memPositions struct {
	mu  sync.Mutex
	pos map[int]lsn.Position
}

func (m *memPositions) Load(_ context.Context, parts []int) (map[int]lsn.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int]lsn.Position{}
	for _, p := range parts {
		if pos, ok := m.pos[p]; ok {
			out[p] = pos
		}
	}
	return out, nil
}

func (m *memPositions) Save(_ context.Context, pos map[int]lsn.Position) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pos == nil {
		m.pos = map[int]lsn.Position{}
	}
	for p, v := range pos {
		if old, ok := m.pos[p]; !ok || v.Compare(old) > 0 {
			m.pos[p] = v
		}
	}
	return nil
}

// Events the executors settled and that reach the stream again (re-published
// after JetStream's duplicate window, by a reader that restarted from an older
// confirmed position) are not delivered again by another executor, which learns
// each partition's settled position from Positions; a message marked as a replay
// (ReplayHeader) is delivered again.
func TestExecutorDropsSettledRepeats(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	c, st := connect(t, cfg)
	r, _ := startPublisher(t, c)
	o := &oracle{}
	positions := &memPositions{}
	opts := ExecutorOptions{Positions: positions, PositionsInterval: 50 * time.Millisecond}
	_, stop1 := runExecutorOpts(t, cfg, "e1", o, opts)
	evs := sinktest.Events(400, 40)
	r.push(t, evs)
	waitDrained(t, c, o, len(evs), time.Minute)
	stop1() // saves the settled positions

	// The same events again, as JetStream stores them once the duplicate window
	// has passed (no Nats-Msg-Id: nothing to recognise them by), and one replay.
	ctx := sinktest.Context(t)
	for i, ev := range evs {
		m := &natsio.Msg{Subject: Subject(c.cfg.SubjectPrefix, Partition(ev, c.cfg.Partitions)), Data: ev.JSON(), Header: natsio.Header{}}
		if i == 7 {
			m.Header.Set(ReplayHeader, "1")
		}
		if _, err := c.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	set := metrics.NewSet()
	opts.Metrics = set
	runExecutorOpts(t, cfg, "e2", o, opts)
	waitFor(t, time.Minute, "the stream drained again", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if repeats := o.check(t, evs); repeats != 1 || o.by("e2") != 1 {
		t.Fatalf("unexpected repeats; got %d (%d by the second executor); want 1, the replayed event", repeats, o.by("e2"))
	}
	if got := set.GetOrCreateCounter(`observer_dedup_dropped_total{layer="checkpoint"}`).Get(); got != uint64(len(evs)-1) {
		t.Fatalf("unexpected observer_dedup_dropped_total; got %d; want %d", got, len(evs)-1)
	}
}
