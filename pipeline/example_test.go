package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// printSink is a Sink: Deliver returns nil once the target accepted the event. This
// one writes a line per event and refuses orders without a status, with an error
// that says it is not worth retrying.
type printSink struct{}

func (printSink) Deliver(_ context.Context, ev *decoder.Event) error {
	status, ok := ev.New.Get("status")
	if !ok {
		return rejected{fmt.Sprintf("order %s has no status", ev.Key.AppendJSON(nil))}
	}
	fmt.Printf("deliver %s %s.%s %s status=%s\n", ev.ID, ev.Schema, ev.Table, ev.Op, status)
	return nil
}

// rejected is a delivery failure that a retry cannot fix (pipeline.Retryable).
type rejected struct{ msg string }

func (e rejected) Error() string      { return e.msg }
func (e rejected) Retryable() bool    { return false }
func (e rejected) ErrorClass() string { return "rejected" }

// printDLQ stands in for the durable dead-letter queue (dlq.Store in the service).
type printDLQ struct{}

func (printDLQ) Put(_ context.Context, dl pipeline.DeadLetter) error {
	fmt.Printf("dead letter %s for %s: %v (class %s, %d attempt)\n",
		dl.Event.ID, dl.Action, dl.Err, pipeline.ErrorClass(dl.Err), dl.Attempts)
	return nil
}

// An action's Sink receives the events its observer matched, one key after the other
// in commit order. The pipeline acknowledges an event's ticket once every action has
// settled it (delivered, or parked in the DLQ), and the watermark then says which
// position the replication session may confirm to PostgreSQL.
func ExampleSink() {
	wm := lsn.NewWatermark(lsn.CompareLSNs)
	wm.Reset(0x1000)
	p, err := pipeline.New(pipeline.Options{
		Observers: []*pipeline.Observer{{
			Name: "orders", Schema: "public", Table: "orders", Ops: []decoder.Op{decoder.OpInsert},
			Actions: []*pipeline.Action{{
				ID: "orders.print", Type: "print", Sink: printSink{},
				Retry: pipeline.RetryPolicy{MaxAttempts: 3}, OnFailure: pipeline.FailureDLQ,
			}},
		}},
		Acker: wm,
		DLQ:   printDLQ{},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- p.Run(ctx) }()

	// One transaction committed at 0/2000 (its commit record ends at 0/2030) that
	// inserted two rows of the same order key, the second without a status.
	row := func(cols ...string) *decoder.Row {
		r := &decoder.Row{}
		for i := 0; i < len(cols); i += 2 {
			r.Names = append(r.Names, cols[i])
			r.Values = append(r.Values, json.RawMessage(cols[i+1]))
		}
		return r
	}
	evs := []*decoder.Event{
		{ID: lsn.Position{Commit: 0x2000, Ord: 1}, Schema: "public", Table: "orders", Op: decoder.OpInsert,
			Key: row("id", "1"), New: row("id", "1", "status", `"shipped"`)},
		{ID: lsn.Position{Commit: 0x2000, Ord: 2}, Schema: "public", Table: "orders", Op: decoder.OpInsert,
			Key: row("id", "1"), New: row("id", "1")},
	}
	tickets := []lsn.Ticket{wm.Dispatch(0x2000), wm.Dispatch(0x2000)}
	p.Push(evs, tickets)
	wm.Ack(wm.Dispatch(0x2030)) // the commit marker: nothing to deliver

	if err := p.Drain(context.Background()); err != nil {
		fmt.Println(err)
	}
	cancel()
	if err := <-stopped; err != nil && !errors.Is(err, context.Canceled) {
		fmt.Println(err)
	}
	confirmed, _ := wm.Acked()
	fmt.Println("confirm", confirmed)
	// Output:
	// deliver 0/2000:1 public.orders INSERT status="shipped"
	// dead letter 0/2000:2 for orders.print: order {"id":1} has no status (class rejected, 1 attempt)
	// confirm 0/2030
}
