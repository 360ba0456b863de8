package sinks

import (
	"context"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// Deliverer is the part of a sink that delivers one event (the pipeline's Sink).
type Deliverer interface {
	Deliver(ctx context.Context, ev *decoder.Event) error
}

// Unbatched returns s without its DeliverBatch method, so that the pipeline hands it
// one event at a time: for a sink configured with batch_size 1, grouping events
// would only serialize requests the pipeline's workers could send in parallel.
// Close is passed on to s when s has one.
func Unbatched(s Deliverer) Deliverer { return unbatched{s} }

type unbatched struct{ s Deliverer }

func (u unbatched) Deliver(ctx context.Context, ev *decoder.Event) error { return u.s.Deliver(ctx, ev) }

func (u unbatched) Close() error {
	if c, ok := u.s.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
