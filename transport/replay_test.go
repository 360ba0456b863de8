package transport

import (
	"strconv"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// TestPublishReplay: a replay publishes the events of its range again when the
// session sends them again, as new messages (a Nats-Msg-Id of their own, so the
// duplicate window does not drop them; the event inside keeps its id) in the same
// Nats-Expected-Last-Msg-Id chain; the other events sent again are not published
// again. A second replay of the same range is stored again too, and so is a third
// one asked of a restarted publisher before anything was pushed to it.
func TestPublishReplay(t *testing.T) {
	_, url := startNATS(t)
	c, st := connect(t, testConfig(url))
	set := metrics.NewSet()
	r, stop := startPublisherOpts(t, c, PublisherOptions{Metrics: set})
	all := sinktest.Events(410, 40) // ten events per transaction
	evs := all[:400]
	r.push(t, evs[:300])
	r.waitAcked(t, evs[:300], time.Minute)

	rng := evs[100:200]
	replay := func() int64 {
		n, _ := r.pub.Replay(Replay{From: rng[0].ID.Commit, To: rng[len(rng)-1].ID.Commit, Observer: "o"})
		// The session, rewound to before the range, sends everything again, then
		// new events.
		r.push(t, evs[50:300])
		return n
	}
	n1 := replay()
	r.push(t, evs[300:350])
	r.waitAcked(t, evs[:350], time.Minute)
	n2 := replay()
	if n2 == n1 {
		t.Fatalf("two replays with the same number %d", n1)
	}
	r.push(t, evs[350:])
	r.waitAcked(t, evs, time.Minute)
	if got, _ := metricValue(set, `observer_transport_replayed_total`); got != 200 {
		t.Fatalf("unexpected observer_transport_replayed_total; got %v; want 200", got)
	}

	// A restarted reader: the session's settled position says what the stream
	// holds; the rewound session sends everything again from before the range.
	stop()
	set3 := metrics.NewSet()
	r3, _ := startPublisherOpts(t, c, PublisherOptions{Metrics: set3})
	n3, _ := r3.pub.Replay(Replay{From: rng[0].ID.Commit, To: rng[len(rng)-1].ID.Commit, Observer: "o", Stored: all[400].ID.Commit})
	r3.push(t, all[50:])
	r3.waitAcked(t, all[50:], time.Minute)
	if got, _ := metricValue(set3, `observer_transport_publish_duplicates_total`); got != 0 {
		t.Fatalf("the restarted reader published %v events the stream held already", got)
	}

	// The stream, in order: the first 300, the range again (n1), 50 new ones, the
	// range again (n2), the last 50.
	type want struct {
		ev *decoder.Event
		n  int64 // 0: not a replay
	}
	var wants []want
	add := func(evs []*decoder.Event, n int64) {
		for _, ev := range evs {
			wants = append(wants, want{ev, n})
		}
	}
	add(evs[:300], 0)
	add(rng, n1)
	add(evs[300:350], 0)
	add(rng, n2)
	add(evs[350:], 0)
	add(rng, n3)
	add(all[400:], 0)
	msgs := storedMsgs(t, st)
	if len(msgs) != len(wants) {
		t.Fatalf("unexpected message count in the stream; got %d; want %d", len(msgs), len(wants))
	}
	for i, m := range msgs {
		w := wants[i]
		id, rep, obs := w.ev.ID.String(), "", ""
		if w.n != 0 {
			id, rep, obs = ReplayMsgID(w.ev.ID, w.n), strconv.FormatInt(w.n, 10), "o"
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != id {
			t.Fatalf("unexpected Nats-Msg-Id of message %d; got %q; want %q", i, got, id)
		}
		if m.Header.Get(ReplayHeader) != rep || m.Header.Get(ReplayObserverHeader) != obs {
			t.Fatalf("unexpected replay headers of message %d (%s); got %q, %q; want %q, %q", i, id,
				m.Header.Get(ReplayHeader), m.Header.Get(ReplayObserverHeader), rep, obs)
		}
		if string(m.Data) != string(w.ev.JSON()) {
			t.Fatalf("unexpected data of message %d; got %s; want %s", i, m.Data, w.ev.JSON())
		}
		if want := Subject(c.cfg.SubjectPrefix, Partition(w.ev, c.cfg.Partitions)); m.Subject != want {
			t.Fatalf("unexpected subject of message %d; got %s; want %s", i, m.Subject, want)
		}
	}
	if got, _ := metricValue(set3, `observer_transport_replayed_total`); got != 100 {
		t.Fatalf("unexpected observer_transport_replayed_total of the restarted reader; got %v; want 100", got)
	}
}
