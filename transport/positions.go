package transport

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Positions stores, per partition, the position up to which every event of the
// partition was settled (delivered or stored in the DLQ by every matching action):
// the partition's settled position. An executor loads it when it starts serving a
// partition and drops, acknowledged, every message at or below it, so a repeat is
// not delivered again whichever executor served the partition before. The service
// keeps it in PostgreSQL beside the checkpoints (checkpoint.Partitions). Both
// methods block; implementations are safe for concurrent use.
type Positions interface {
	// Load returns the positions of the given partitions; a partition without one
	// is absent.
	Load(ctx context.Context, partitions []int) (map[int]lsn.Position, error)
	// Save raises the positions of the partitions given; a stored position is
	// never lowered.
	Save(ctx context.Context, positions map[int]lsn.Position) error
}

// settledPositions is the deduplication state of one generation: per partition,
// the settled position as loaded and advanced by the acknowledgements. A partition
// is in commit order, so its events are dispatched to its watermark in order and
// the watermark's position is the highest one below which every event was settled.
type settledPositions struct {
	wm    map[int]*lsn.Watermark[lsn.Position] // fixed when the generation starts
	saved map[int]lsn.Position                 // saver only
}

// loadPositions loads the settled positions of the partitions of g; nil when the
// executor keeps none.
func (e *Executor) loadPositions(ctx context.Context, g *Generation) (*settledPositions, error) {
	if e.opts.Positions == nil {
		return nil, nil
	}
	parts := slices.Sorted(maps.Keys(g.epochs))
	var loaded map[int]lsn.Position
	err := e.retry(ctx, g, func(cctx context.Context) error {
		var err error
		loaded, err = e.opts.Positions.Load(cctx, parts)
		return err
	})
	if err != nil {
		return nil, err
	}
	sp := &settledPositions{wm: map[int]*lsn.Watermark[lsn.Position]{}, saved: loaded}
	for _, p := range parts {
		w := lsn.NewWatermark(lsn.ComparePositions)
		if pos, ok := loaded[p]; ok {
			w.Reset(pos)
		}
		sp.wm[p] = w
	}
	return sp, nil
}

// repeat reports whether the event of msg in partition p is at or below the
// partition's settled position: a redelivery (an acknowledgement lost, an executor
// that died or lost its lease after settling it) or an event re-published after
// JetStream's duplicate window. Replayed messages (ReplayHeader) and snapshot rows
// are never repeats.
func (sp *settledPositions) repeat(p int, msg jetstream.Msg, ev *decoder.Event) bool {
	if sp == nil || ev.Op == decoder.OpRead || msg.Headers().Get(ReplayHeader) != "" {
		return false
	}
	pos, ok := sp.wm[p].Acked()
	return ok && ev.ID.Compare(pos) <= 0
}

// dispatch records that the event of msg in partition p enters the pipeline and
// returns its ticket in the partition's watermark; 0 when it does not count
// (no positions kept, a replayed message or a snapshot row).
func (sp *settledPositions) dispatch(p int, msg jetstream.Msg, ev *decoder.Event) lsn.Ticket {
	if sp == nil || ev.Op == decoder.OpRead || msg.Headers().Get(ReplayHeader) != "" {
		return 0
	}
	return sp.wm[p].Dispatch(ev.ID)
}

// settled records that the event dispatched under t in partition p was settled.
func (sp *settledPositions) settled(p int, t lsn.Ticket) {
	if sp != nil && t != 0 {
		sp.wm[p].Ack(t)
	}
}

// changed returns the positions that rose since they were last saved.
func (sp *settledPositions) changed() map[int]lsn.Position {
	out := map[int]lsn.Position{}
	for p, w := range sp.wm {
		pos, ok := w.Acked()
		if !ok {
			continue
		}
		if s, had := sp.saved[p]; had && pos.Compare(s) <= 0 {
			continue
		}
		out[p] = pos
	}
	return out
}

// save stores the positions that rose; an error is logged and the save is tried
// again by the next call.
func (g *Generation) save(ctx context.Context) {
	ch := g.positions.changed()
	if len(ch) == 0 {
		return
	}
	cctx, cancel := g.e.c.timeout(ctx)
	defer cancel()
	if err := g.e.opts.Positions.Save(cctx, ch); err != nil {
		g.e.m.positionErrs.Inc()
		g.e.log.Warn().Err(err).Msg("cannot save the settled positions of the transport partitions; trying again")
		return
	}
	maps.Copy(g.positions.saved, ch)
}

// savePositions saves the settled positions every PositionsInterval until the
// generation's run ends.
func (g *Generation) savePositions() {
	t := time.NewTicker(g.e.opts.PositionsInterval)
	defer t.Stop()
	for {
		select {
		case <-g.runCtx.Done():
			return
		case <-t.C:
		}
		g.save(g.runCtx)
	}
}
