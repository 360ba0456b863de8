package pipeline

import (
	"fmt"
	"slices"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// ObserversOf returns the names of the observers that fire for op on schema.table,
// those of the table first, then the wildcard ones, each in configuration order. For
// OpRead these are the observers whose event_type lists READ.
func (p *Pipeline) ObserversOf(schema, table string, op decoder.Op) []string {
	ev := decoder.Event{Schema: schema, Table: table, Op: op}
	var names []string
	for _, o := range p.ix.lookup(nil, &ev) {
		names = append(names, o.Name)
	}
	return names
}

// Target sends the snapshot rows built with rel (events of OpRead whose Relation is
// rel) to the named observer only, whatever its event_type lists; its condition still
// applies. It is an error when no observer has that name or when the observer does not
// watch rel's table. The returned function ends the targeting; call it once every
// event built with rel has been pushed and routed. Safe for concurrent use with Run.
func (p *Pipeline) Target(rel *decoder.Relation, observer string) (release func(), err error) {
	var found *Observer
	for _, o := range p.opts.Observers {
		if o.Name == observer {
			found = o
			break
		}
	}
	switch {
	case found == nil:
		return nil, fmt.Errorf("no observer named %q", observer)
	case !observesTable(found, rel.Namespace, rel.Name):
		return nil, fmt.Errorf("observer %q does not watch %s.%s", observer, rel.Namespace, rel.Name)
	}
	p.targets.Store(rel, found)
	return func() { p.targets.CompareAndDelete(rel, found) }, nil
}

// targeted returns the observer a snapshot row is for, when Target named one.
func (p *Pipeline) targeted(ev *decoder.Event) (*Observer, bool) {
	if ev.Op != decoder.OpRead || ev.Relation == nil {
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
