package service

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/fraiseql/fraiseql-observers/admin"
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/transport"
)

// readerPipeline is what a snapshot needs of the pipeline (snapshot.Pipeline) on the
// reader of the nats transport, which runs none: the session's consumer is the
// transport's publisher, a chunk's rows are settled once JetStream stored them (so a
// snapshot's progress means "in the stream"), and the executors deliver them. It is
// safe for concurrent use.
type readerPipeline struct {
	pub    *transport.Publisher
	routes *pipeline.Routes
	budget int64 // pipeline.max_in_flight_bytes
	window int   // transport.max_pending

	targets sync.Map // *decoder.Relation → observer name (Target)
}

// newReaderPipeline returns the readerPipeline of the configured observers; set pub
// before a snapshot runs.
func newReaderPipeline(cfg *configs.Config, tc transport.Config) *readerPipeline {
	observers := make([]*pipeline.Observer, 0, len(cfg.Observers))
	for _, o := range cfg.Observers {
		po := &pipeline.Observer{Name: o.Name, Ops: o.Ops, MessagePrefix: o.MessagePrefix}
		if !o.Wildcard {
			po.Schema, po.Table = o.Table.Schema, o.Table.Table
		}
		observers = append(observers, po)
	}
	return &readerPipeline{routes: pipeline.NewRoutes(observers), budget: int64(cfg.Pipeline.MaxInFlightBytes), window: tc.MaxPending}
}

// InFlightBytes returns the size of the events the publisher holds that JetStream
// has not stored yet; while half of the publisher's window (transport.max_pending) is
// taken it returns at least the whole budget, so that the next chunk waits for the
// transport as it waits for a pipeline that is half full.
func (r *readerPipeline) InFlightBytes() int64 {
	b := r.pub.InFlightBytes()
	if r.pub.Outstanding() >= max(r.window/2, 1) {
		b = max(b, r.budget)
	}
	return b
}

// ObserversOf returns the observers that fire for op on schema.table, as the
// executors' pipelines route.
func (r *readerPipeline) ObserversOf(schema, table string, op decoder.Op) []string {
	return r.routes.ObserversOf(schema, table, op)
}

// Target marks the READ events built with rel for one observer: the publisher sends
// its name in transport.ObserverHeader (observerOf), and the executors deliver them
// to that observer alone (pipeline.PushTargeted).
func (r *readerPipeline) Target(rel *decoder.Relation, observer string) (release func(), err error) {
	if _, err := r.routes.Target(rel.Namespace, rel.Name, observer); err != nil {
		return nil, err
	}
	r.targets.Store(rel, observer)
	return func() { r.targets.CompareAndDelete(rel, observer) }, nil
}

// observerOf is the publisher's PublisherOptions.Observer: the observer a targeted
// snapshot's row is for.
func (r *readerPipeline) observerOf(ev *decoder.Event) string {
	if ev.Op != decoder.OpRead || ev.Relation == nil {
		return ""
	}
	if o, ok := r.targets.Load(ev.Relation); ok {
		return o.(string)
	}
	return ""
}

// snapshotsOnExecutor is the answer of the snapshot endpoints of an executor
// (--role executor): snapshots run on the reader, which it names when the listener
// registry knows it (the streaming instance with the highest epoch).
func (s *Service) snapshotsOnExecutor(ctx context.Context) error {
	reader := "none is streaming the slot now"
	if ls, err := s.ops.reg.List(ctx); err == nil {
		var epoch int64
		for _, l := range ls {
			if l.Streaming && l.Healthy && l.Epoch > epoch {
				reader, epoch = l.ListenerID, l.Epoch
			}
		}
	}
	return &admin.Error{Status: http.StatusConflict, Code: "executor", Detail: map[string]string{"reader": reader},
		Msg: fmt.Sprintf("this instance (%s) is an executor (--role executor): snapshots run on the reader of slot %s (%s); "+
			"use the reader's admin endpoint (its configuration)", s.cfg.ListenerID, s.cfg.Source.Slot, reader)}
}
