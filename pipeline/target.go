package pipeline

import (
	"fmt"
	"slices"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Routes answers which observers receive an event from the observers' tables and
// operations alone, as a pipeline routes: for a process that reads the slot but runs
// no pipeline (the transport's reader), which needs the answers for snapshots. The
// observers need no actions and no condition. A Routes is safe for concurrent use.
type Routes struct {
	observers []*Observer
	ix        *index
}

// NewRoutes returns the Routes of observers; it keeps the slice.
func NewRoutes(observers []*Observer) *Routes {
	return &Routes{observers: observers, ix: newIndex(observers)}
}

// Observed reports whether an observer fires for ev: one of its table (or a wildcard
// one) for its operation, or for a message one whose message_prefix matches. The
// condition is not evaluated.
func (r *Routes) Observed(ev *decoder.Event) bool {
	var buf [4]*Observer
	return len(r.ix.lookup(buf[:0], ev)) > 0
}

// ObserversOf returns the names of the observers that fire for op on schema.table,
// those of the table first, then the wildcard ones, each in configuration order. For
// OpRead these are the observers whose event_type lists READ.
func (r *Routes) ObserversOf(schema, table string, op decoder.Op) []string {
	return observersOf(r.ix, schema, table, op)
}

// Target returns the observer named observer when snapshot rows of schema.table may
// be sent to it alone (Pipeline.Target): it is an error when no observer has that name
// or when the observer does not watch the table.
func (r *Routes) Target(schema, table, observer string) (*Observer, error) {
	return targetOf(r.observers, schema, table, observer)
}

// ObserversOf returns the names of the observers that fire for op on schema.table,
// as Routes.ObserversOf.
func (p *Pipeline) ObserversOf(schema, table string, op decoder.Op) []string {
	return observersOf(p.ix, schema, table, op)
}

func observersOf(ix *index, schema, table string, op decoder.Op) []string {
	ev := decoder.Event{Schema: schema, Table: table, Op: op}
	var names []string
	for _, o := range ix.lookup(nil, &ev) {
		names = append(names, o.Name)
	}
	return names
}

func targetOf(observers []*Observer, schema, table, observer string) (*Observer, error) {
	i := slices.IndexFunc(observers, func(o *Observer) bool { return o.Name == observer })
	switch {
	case i < 0:
		return nil, fmt.Errorf("no observer named %q", observer)
	case !observesTable(observers[i], schema, table):
		return nil, fmt.Errorf("observer %q does not watch %s.%s", observer, schema, table)
	}
	return observers[i], nil
}

// Target sends the snapshot rows built with rel (events of OpRead whose Relation is
// rel) to the named observer only, whatever its event_type lists; its condition still
// applies. It is an error when no observer has that name or when the observer does not
// watch rel's table. The returned function ends the targeting; call it once every
// event built with rel has been pushed and routed. Safe for concurrent use with Run.
func (p *Pipeline) Target(rel *decoder.Relation, observer string) (release func(), err error) {
	found, err := targetOf(p.opts.Observers, rel.Namespace, rel.Name, observer)
	if err != nil {
		return nil, err
	}
	p.targets.Store(rel, found)
	return func() { p.targets.CompareAndDelete(rel, found) }, nil
}

// PushTargeted is Push for snapshot rows that were read for one observer elsewhere
// (the transport's reader targeted them, see Target): each event of OpRead goes to
// the named observer only, whatever its event_type lists, and its condition still
// applies; other events are routed as by Push. A row of a table the observer does not
// watch, or for an observer this pipeline does not have (the processes'
// configurations differ), is delivered to nobody: it is logged and its ticket
// acknowledged at once. Safe for concurrent use with Run.
func (p *Pipeline) PushTargeted(observer string, evs []*decoder.Event, tickets []lsn.Ticket) {
	if len(evs) != len(tickets) {
		panic(fmt.Sprintf("pipeline: PushTargeted of %d events with %d tickets", len(evs), len(tickets)))
	}
	keep, kept := evs[:0], tickets[:0]
	for i, ev := range evs {
		if ev.Op == decoder.OpRead {
			o, err := targetOf(p.opts.Observers, ev.Schema, ev.Table, observer)
			if err != nil {
				p.log.Warn().Err(err).Str("event_id", ev.ID.String()).
					Msg("snapshot row for an observer this process cannot deliver it to: not delivered (the processes' configurations differ)")
				p.opts.Acker.Ack(tickets[i])
				continue
			}
			p.evTargets.Store(ev, o)
		}
		keep, kept = append(keep, ev), append(kept, tickets[i])
	}
	p.Push(keep, kept)
}

// targeted returns the observer a snapshot row is for, when Target or PushTargeted
// named one.
func (p *Pipeline) targeted(ev *decoder.Event) (*Observer, bool) {
	if ev.Op != decoder.OpRead {
		return nil, false
	}
	if o, ok := p.evTargets.LoadAndDelete(ev); ok {
		return o.(*Observer), true
	}
	if ev.Relation == nil {
		return nil, false
	}
	o, ok := p.targets.Load(ev.Relation)
	if !ok {
		return nil, false
	}
	return o.(*Observer), true
}

// observesTable reports whether o fires for some row operation on schema.table.
func observesTable(o *Observer, schema, table string) bool {
	rows := slices.ContainsFunc(o.Ops, func(op decoder.Op) bool { return op != decoder.OpMessage })
	wildcard := o.Schema == "" && o.Table == ""
	return rows && (wildcard || (o.Schema == schema && o.Table == table))
}
