package transport

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// reader stands for the replication session: it dispatches events into a
// watermark, pushes them while the publisher is not full, and confirms what the
// watermark acknowledged.
type reader struct {
	wm  *lsn.Watermark[lsn.Position]
	pub *Publisher
}

func startPublisher(t *testing.T, c *Client) (*reader, func()) { return startPublisherTB(t, c) }

func startPublisherTB(t testing.TB, c *Client) (*reader, func()) {
	t.Helper()
	return startPublisherOpts(t, c, PublisherOptions{})
}

// startPublisherOpts is startPublisher with options (Acker and Logger are filled
// in).
func startPublisherOpts(t testing.TB, c *Client, opts PublisherOptions) (*reader, func()) {
	t.Helper()
	r := &reader{wm: lsn.NewWatermark(lsn.Position.Compare)}
	opts.Acker, opts.Logger = r.wm, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	pub, err := NewPublisher(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.pub = pub
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := pub.Run(ctx); err != nil {
			t.Errorf("publisher: %v", err)
		}
	}()
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return r, stop
}

// push hands evs over in batches of 50, waiting (with a deadline) while the
// publisher is full, as the session does.
func (r *reader) push(t testing.TB, evs []*decoder.Event) {
	t.Helper()
	for i := 0; i < len(evs); i += 50 {
		for r.pub.Full() {
			select {
			case <-r.pub.Ready():
			case <-time.After(time.Minute):
				t.Fatal("publisher stayed full for a minute")
			}
		}
		batch := evs[i:min(i+50, len(evs))]
		tickets := make([]lsn.Ticket, len(batch))
		for j, ev := range batch {
			tickets[j] = r.wm.Dispatch(ev.ID)
		}
		r.pub.Push(batch, tickets)
	}
}

// waitAcked waits until the watermark confirms the last event.
func (r *reader) waitAcked(t testing.TB, evs []*decoder.Event, d time.Duration) {
	t.Helper()
	last := evs[len(evs)-1].ID
	waitFor(t, d, "every event acknowledged by JetStream", func() bool {
		pos, ok := r.wm.Acked()
		return ok && pos == last && r.wm.Outstanding() == 0
	})
	if pos, _ := r.pub.Acked(); pos != last {
		t.Fatalf("unexpected publisher watermark; got %s; want %s", pos, last)
	}
}

// checkStream checks that the stream holds every event exactly once, on the
// subject of its partition, under its id, in commit order.
func checkStream(t *testing.T, c *Client, st jetstream.Stream, evs []*decoder.Event) {
	t.Helper()
	index := map[string]int{}
	for i, ev := range evs {
		index[ev.ID.String()] = i
	}
	msgs := storedMsgs(t, st)
	if len(msgs) != len(evs) {
		t.Fatalf("unexpected message count in the stream; got %d; want %d", len(msgs), len(evs))
	}
	prev := -1
	for _, m := range msgs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		i, ok := index[id]
		if !ok {
			t.Fatalf("unexpected message %q in the stream", id)
		}
		if i <= prev {
			t.Fatalf("unexpected order: event %d stored after event %d", i, prev)
		}
		prev = i
		if want := Subject(c.cfg.SubjectPrefix, Partition(evs[i], c.cfg.Partitions)); m.Subject != want {
			t.Fatalf("unexpected subject of %s; got %s; want %s", id, m.Subject, want)
		}
		if string(m.Data) != string(evs[i].JSON()) {
			t.Fatalf("unexpected data of %s; got %s; want %s", id, m.Data, evs[i].JSON())
		}
	}
}

func TestPublishInOrderAndConfirmOnlyStored(t *testing.T) {
	_, url := startNATS(t)
	c, st := connect(t, testConfig(url))
	r, _ := startPublisher(t, c)
	evs := sinktest.Events(3000, 40)
	r.push(t, evs)
	r.waitAcked(t, evs, time.Minute)
	checkStream(t, c, st, evs)
	if !r.pub.Available() {
		t.Fatal("unexpected: publisher not available after storing everything")
	}
}

// An event no observer can fire for is not published, and its ticket is
// acknowledged at once: the slot moves past it as past a published one.
func TestPublishSkipsUnobservedEvents(t *testing.T) {
	_, url := startNATS(t)
	c, st := connect(t, testConfig(url))
	evs := sinktest.Events(1000, 40)
	var observed []*decoder.Event
	for i, ev := range evs {
		if i%3 != 0 {
			ev.Table = "audit"
			continue
		}
		observed = append(observed, ev)
	}
	r, _ := startPublisherOpts(t, c, PublisherOptions{Observed: func(ev *decoder.Event) bool { return ev.Table == "orders" }})
	r.push(t, evs)
	last := evs[len(evs)-1].ID
	waitFor(t, time.Minute, "every event confirmed", func() bool {
		pos, ok := r.wm.Acked()
		return ok && pos == last && r.wm.Outstanding() == 0
	})
	if pos, _ := r.pub.Acked(); pos != observed[len(observed)-1].ID {
		t.Fatalf("unexpected publisher watermark; got %s; want %s", pos, observed[len(observed)-1].ID)
	}
	checkStream(t, c, st, observed)
}

// Before any executor ran there is no consumer: the backlog of every partition is
// what the stream holds on its subject.
func TestBacklogsWithoutConsumers(t *testing.T) {
	_, url := startNATS(t)
	c, _ := connect(t, testConfig(url))
	r, _ := startPublisher(t, c)
	evs := sinktest.Events(500, 40)
	r.push(t, evs)
	r.waitAcked(t, evs, time.Minute)
	want := map[int]uint64{}
	for _, ev := range evs {
		want[Partition(ev, c.cfg.Partitions)]++
	}
	backlogs, err := c.Backlogs(sinktest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(backlogs) != len(want) {
		t.Fatalf("unexpected backlogs; got %+v; want the %d partitions holding events", backlogs, len(want))
	}
	for _, b := range backlogs {
		if b.Consumer != "" || b.Pending != want[b.Partition] || b.AckPending != 0 {
			t.Fatalf("unexpected backlog of partition %d; got %+v; want %d pending and no consumer", b.Partition, b, want[b.Partition])
		}
	}
}

// The reader holds the slot while NATS is away: nothing is confirmed that the
// stream does not hold, the publisher fills and says so, and everything is stored
// once, in order, when NATS is back.
func TestPublishHoldsWhileNATSIsAway(t *testing.T) {
	srv, url := startNATS(t)
	c, st := connect(t, testConfig(url))
	r, _ := startPublisher(t, c)
	evs := sinktest.Events(2000, 40)
	r.push(t, evs[:500])
	r.waitAcked(t, evs[:500], time.Minute)

	srv.Kill()
	done := make(chan struct{})
	go func() { defer close(done); r.push(t, evs[500:]) }()
	waitFor(t, time.Minute, "the publisher to report NATS unavailable and fill up", func() bool {
		return !r.pub.Available() && r.pub.Full()
	})
	if pos, _ := r.wm.Acked(); pos != evs[499].ID {
		t.Fatalf("unexpected confirmation while NATS is away; got %s; want %s", pos, evs[499].ID)
	}
	srv.Start()
	<-done
	r.waitAcked(t, evs, 2*time.Minute)
	checkStream(t, c, st, evs)
}

// A publisher that restarts (a reader that crashed, or the standby taking over)
// publishes again what was not confirmed: the duplicate window drops what the
// stream already holds.
func TestPublishAgainAfterRestartIsDeduplicated(t *testing.T) {
	_, url := startNATS(t)
	c, st := connect(t, testConfig(url))
	evs := sinktest.Events(1000, 40)
	r1, stop := startPublisher(t, c)
	r1.push(t, evs[:600])
	r1.waitAcked(t, evs[:600], time.Minute)
	stop()
	// The new reader starts from an older confirmed position.
	r2, _ := startPublisher(t, c)
	r2.push(t, evs[200:])
	r2.waitAcked(t, evs[200:], time.Minute)
	checkStream(t, c, st, evs)
}

// On a three-node cluster with an R3 stream, killing a node (the stream leader
// among them) loses nothing and keeps the order.
func TestPublishSurvivesNodeLossR3(t *testing.T) {
	nodes, url := startCluster(t)
	cfg := testConfig(url)
	cfg.Replicas = 3
	c, st := connect(t, cfg)
	r, _ := startPublisher(t, c)
	evs := sinktest.Events(4000, 40)
	r.push(t, evs[:1000])
	r.waitAcked(t, evs[:1000], time.Minute)
	info, err := st.Info(sinktest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	leader := info.Cluster.Leader
	for i, n := range nodes {
		if leader == "n"+string(rune('0'+i)) {
			n.Kill()
		}
	}
	r.push(t, evs[1000:])
	r.waitAcked(t, evs, 2*time.Minute)
	checkStream(t, c, st, evs)
}

// With every node of a three-node cluster down, the reader holds the slot; when
// the cluster is back it publishes the rest, once and in order.
func TestPublishHoldsWhileClusterIsDown(t *testing.T) {
	nodes, url := startCluster(t)
	cfg := testConfig(url)
	cfg.Replicas = 3
	c, st := connect(t, cfg)
	r, _ := startPublisher(t, c)
	evs := sinktest.Events(2000, 40)
	r.push(t, evs[:500])
	r.waitAcked(t, evs[:500], time.Minute)
	for _, n := range nodes {
		n.Kill()
	}
	done := make(chan struct{})
	go func() { defer close(done); r.push(t, evs[500:]) }()
	waitFor(t, time.Minute, "the publisher to report NATS unavailable and fill up", func() bool {
		return !r.pub.Available() && r.pub.Full()
	})
	if pos, _ := r.wm.Acked(); pos != evs[499].ID {
		t.Fatalf("unexpected confirmation while NATS is away; got %s; want %s", pos, evs[499].ID)
	}
	for _, n := range nodes {
		n.Start()
	}
	<-done
	r.waitAcked(t, evs, 3*time.Minute)
	checkStream(t, c, st, evs)
}

// The events awaiting their PubAck are bounded by bytes (pipeline.max_in_flight_bytes)
// as well as by count: events filled from the row cache can be large.
func TestPublisherFullByBytes(t *testing.T) {
	_, url := startNATS(t)
	c, _ := connect(t, testConfig(url))
	evs := sinktest.Events(3, 3)
	size := int64(evs[0].Size() + evs[1].Size())
	pub, err := NewPublisher(c, PublisherOptions{Acker: lsn.NewWatermark(lsn.Position.Compare), MaxInFlightBytes: size + 1})
	if err != nil {
		t.Fatal(err)
	}
	pub.Push(evs[:2], []lsn.Ticket{1, 2}) // not run: nothing is published
	if pub.Full() || pub.InFlightBytes() != size {
		t.Fatalf("unexpected state after two events; full %v, %d bytes; want not full, %d bytes", pub.Full(), pub.InFlightBytes(), size)
	}
	pub.Push(evs[2:], []lsn.Ticket{3})
	if !pub.Full() {
		t.Fatalf("unexpected: not full with %d bytes over a budget of %d (3 events of max_pending %d)", pub.InFlightBytes(), size+1, c.cfg.MaxPending)
	}
}

// The observer an event is for travels in ObserverHeader, the other events carry
// none; InFlightBytes counts the events JetStream has not acknowledged.
func TestPublishObserverHeaderAndInFlightBytes(t *testing.T) {
	srv, url := startNATS(t)
	c, st := connect(t, testConfig(url))
	r, _ := startPublisherOpts(t, c, PublisherOptions{Observer: func(ev *decoder.Event) string {
		if ev.ID.Ord%2 == 0 {
			return "b"
		}
		return ""
	}})
	evs := sinktest.Events(200, 40)
	r.push(t, evs)
	r.waitAcked(t, evs, time.Minute)
	checkStream(t, c, st, evs)
	for _, m := range storedMsgs(t, st) {
		ev, err := decoder.ParseEvent(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if ev.ID.Ord%2 == 0 {
			want = "b"
		}
		if got := m.Header.Get(ObserverHeader); got != want {
			t.Fatalf("unexpected %s of %s; got %q; want %q", ObserverHeader, ev.ID, got, want)
		}
	}
	if got := r.pub.InFlightBytes(); got != 0 {
		t.Fatalf("unexpected pending bytes once everything is stored; got %d; want 0", got)
	}
	srv.Kill()
	more := sinktest.Events(210, 40)[200:]
	r.push(t, more)
	var want int64
	for _, ev := range more {
		want += int64(ev.Size())
	}
	if got := r.pub.InFlightBytes(); got != want {
		t.Fatalf("unexpected pending bytes while NATS is away; got %d; want %d", got, want)
	}
}
