package service

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/transport"
)

// TestReaderPipeline: snapshot.mode initial is taken with the nats transport; on its
// reader, a snapshot sees the observers as the executors route, is held back while
// half of the publisher's window waits for JetStream, and marks the rows of a
// targeted table for the publisher.
func TestReaderPipeline(t *testing.T) {
	_, url := sinktest.StartJetStream(t, "")
	yaml := `source:
  dsn: postgres://app@db/app
transport: {type: nats, url: "` + url + `", max_pending: 8}
pipeline: {max_in_flight_bytes: 1MiB}
observers:
  a: {entity: public.t, event_type: [INSERT, READ], actions: [{type: log}]}
  b: {entity: public.t, event_type: [UPDATE], actions: [{type: log}]}
  c: {entity: "*", event_type: [READ], actions: [{type: log}]}
  m: {event_type: [CUSTOM], message_prefix: app, actions: [{type: log}]}
`
	cfg, _, err := configs.Parse("c.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	tc, err := TransportConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Snapshot.Mode = configs.SnapshotInitial
	for _, role := range Roles {
		if _, err := checkRole(role, tc, cfg); err != nil {
			t.Fatalf("snapshot.mode initial refused with transport.type nats and --role %s: %v", role, err)
		}
	}
	c, err := transport.Connect(tc, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	rp := newReaderPipeline(cfg, tc)
	wm := lsn.NewWatermark(lsn.Position.Compare)
	pub, err := transport.NewPublisher(c, transport.PublisherOptions{Acker: wm, Observer: rp.observerOf, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	rp.pub = pub

	if got := rp.ObserversOf("public", "t", decoder.OpRead); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("unexpected READ observers of public.t; got %v; want [a c]", got)
	}
	rel, err := decoder.NewRelation(decoder.Relation{ID: 1, Namespace: "public", Name: "t",
		Columns: []decoder.Column{{Name: "id", TypeOID: 20, Key: true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nobody", "m"} { // unknown; watches no table
		if _, err := rp.Target(rel, name); err == nil {
			t.Fatalf("targeting observer %q succeeded", name)
		}
	}
	release, err := rp.Target(rel, "b")
	if err != nil {
		t.Fatal(err)
	}
	read := &decoder.Event{Op: decoder.OpRead, Schema: "public", Table: "t", Relation: rel}
	other, _ := decoder.NewRelation(decoder.Relation{ID: 2, Namespace: "public", Name: "t"}, nil)
	if rp.observerOf(read) != "b" || rp.observerOf(&decoder.Event{Op: decoder.OpInsert, Relation: rel}) != "" ||
		rp.observerOf(&decoder.Event{Op: decoder.OpRead, Relation: other}) != "" {
		t.Fatalf("unexpected observers of the events: only the READ rows built with the targeted relation are for b")
	}
	release()
	if rp.observerOf(read) != "" {
		t.Fatalf("a released targeting still marks the rows")
	}

	// The publisher does not run: what is pushed waits for JetStream.
	var sizes int64
	push := func(n int) {
		for range n {
			ev := &decoder.Event{ID: lsn.Position{Commit: 100, Ord: uint32(wm.Outstanding() + 1)}, Op: decoder.OpRead, Schema: "public", Table: "t",
				New: &decoder.Row{Names: []string{"id"}, Values: []json.RawMessage{json.RawMessage("1")}}}
			sizes += int64(ev.Size())
			pub.Push([]*decoder.Event{ev}, []lsn.Ticket{wm.Dispatch(ev.ID)})
		}
	}
	push(3)
	if got := rp.InFlightBytes(); got != sizes {
		t.Fatalf("unexpected in-flight bytes with 3 of 8 publishes pending; got %d; want %d", got, sizes)
	}
	push(1)
	if got := rp.InFlightBytes(); got != 1<<20 {
		t.Fatalf("unexpected in-flight bytes with half of the window pending; got %d; want the budget %d", got, 1<<20)
	}
}
