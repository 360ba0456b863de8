package configs

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// observerYAML is the part of an observer decoded field by field; event_type
// and actions are decoded by hand.
type observerYAML struct {
	Entity        string    `yaml:"entity"`
	Table         string    `yaml:"table"`
	MessagePrefix string    `yaml:"message_prefix"`
	Condition     string    `yaml:"condition"`
	Retry         retryYAML `yaml:"retry"`
	OnFailure     string    `yaml:"on_failure"`
}

// retryYAML accepts both the duration keys and the original system's
// millisecond keys.
type retryYAML struct {
	MaxAttempts     int           `yaml:"max_attempts"`
	BackoffStrategy string        `yaml:"backoff_strategy"`
	InitialDelay    time.Duration `yaml:"initial_delay"`
	MaxDelay        time.Duration `yaml:"max_delay"`
	InitialDelayMS  int64         `yaml:"initial_delay_ms"`
	MaxDelayMS      int64         `yaml:"max_delay_ms"`
}

// observerKeys are the keys only an observer has; a body without any of them
// under a top-level setting's name is a misplaced setting.
var observerKeys = []string{"entity", "table", "event_type", "message_prefix", "condition", "actions", "retry", "on_failure"}

// eventTypes maps the event_type values to operations.
var eventTypes = []struct {
	name string
	op   decoder.Op
}{
	{"INSERT", decoder.OpInsert},
	{"UPDATE", decoder.OpUpdate},
	{"DELETE", decoder.OpDelete},
	{"TRUNCATE", decoder.OpTruncate},
	{"READ", decoder.OpRead},
	{"CUSTOM", decoder.OpMessage},
}

// defaultOps are the operations of an observer without event_type.
var defaultOps = []decoder.Op{decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete}

var failurePolicies = []string{string(FailureLog), string(FailureAlert), string(FailureDLQ)}
var backoffs = []string{string(BackoffExponential), string(BackoffLinear), string(BackoffFixed)}

// decodeObservers decodes the observers mapping, in file order.
func (l *loader) decodeObservers(e entry) {
	v, ok := l.d.value(e.value, "observers")
	if !ok || v.kind == kindNull {
		return
	}
	if v.kind != kindMapping {
		l.d.typeError(v, "observers", "a mapping of observer names to observers")
		return
	}
	ids := make(map[string]Pos)
	toggles := make(map[string]bool)
	for _, f := range fieldsOf(reflect.TypeFor[Config]()) {
		toggles[f.name] = true
	}
	for _, oe := range l.d.entries(v.mapping(), "observers") {
		path := join("observers", oe.key)
		body, ok := l.d.value(oe.value, path)
		if !ok {
			continue
		}
		if toggles[oe.key] && looksLikeSetting(l.d, body) {
			l.errorf(oe.keyPos, "`%s` is a top-level setting, not an observer: move it out of `observers:` (see docs/configuration.md#feature-toggles)", oe.key)
			continue
		}
		if err := checkName(oe.key, 128); err != nil {
			l.errorf(oe.keyPos, "observers: invalid observer name %q: %v", oe.key, err)
			continue
		}
		if body.kind != kindMapping {
			l.d.typeError(body, path, "a mapping with entity, event_type and actions")
			continue
		}
		if o := l.decodeObserver(oe, body, path); o != nil {
			for _, a := range o.Actions {
				if first, dup := ids[a.ID]; dup {
					l.errorf(a.Pos, "%s: action id %q is already used by the action at line %d, column %d: give one of them another name", path, a.ID, first.Line, first.Column)
					continue
				}
				ids[a.ID] = a.Pos
			}
			l.cfg.Observers = append(l.cfg.Observers, o)
		}
	}
}

// looksLikeSetting reports whether an observer body is not an observer at all:
// a scalar, or a mapping without any observer key.
func looksLikeSetting(d *yamlDecoder, body value) bool {
	if body.kind != kindMapping {
		return true
	}
	quiet := *d
	quiet.errs = &Errors{}
	quiet.reportDuplicates = false
	for _, e := range quiet.entries(body.mapping(), "") {
		if slices.Contains(observerKeys, e.key) {
			return false
		}
	}
	return true
}

// decodeObserver decodes and checks one observer. It returns nil when the
// observer is too broken to check further.
func (l *loader) decodeObserver(oe entry, body value, path string) *Observer {
	o := &Observer{Name: oe.key, Pos: oe.keyPos, Retry: DefaultRetry()}
	y := observerYAML{Retry: retryYAML{
		MaxAttempts:     o.Retry.MaxAttempts,
		BackoffStrategy: string(o.Retry.BackoffStrategy),
		InitialDelay:    o.Retry.InitialDelay,
		MaxDelay:        o.Retry.MaxDelay,
	}}
	var eventType, actions *entry
	l.d.decodeStruct(body, reflect.ValueOf(&y).Elem(), path, customKeys{
		"event_type": func(e entry) { eventType = &e },
		"actions":    func(e entry) { actions = &e },
	})

	o.Ops = slices.Clone(defaultOps)
	var opsPos Pos
	if eventType != nil {
		opsPos = eventType.keyPos
		if ops := l.decodeOps(*eventType, join(path, "event_type")); ops != nil {
			o.Ops = ops
		}
	}
	custom := slices.Contains(o.Ops, decoder.OpMessage)
	tableOps := slices.ContainsFunc(o.Ops, func(op decoder.Op) bool { return op != decoder.OpMessage })

	l.resolveEntity(o, &y, path, tableOps)

	o.MessagePrefix = y.MessagePrefix
	switch {
	case custom && y.MessagePrefix == "":
		l.errorf(l.d.where(&y.MessagePrefix, opsPos), "%s: event_type CUSTOM needs message_prefix: the prefix of the logical decoding messages to observe", path)
	case !custom && l.d.has(&y.MessagePrefix):
		l.errorf(l.d.keyWhere(&y.MessagePrefix, o.Pos), "%s: message_prefix applies only to event_type CUSTOM", path)
	}

	o.Condition = strings.TrimSpace(y.Condition)
	o.ConditionPos = l.d.textWhere(&y.Condition, Pos{})

	if actions == nil {
		l.errorf(o.Pos, "%s: actions is required: a list of at least one action (type: webhook, ...)", path)
	} else {
		l.decodeActions(o, *actions, join(path, "actions"))
	}

	l.resolveRetry(o, &y.Retry, join(path, "retry"))

	switch {
	case y.OnFailure == "":
		o.OnFailure = FailureLog
		if l.cfg.DLQ.Enabled {
			o.OnFailure = FailureDLQ
		}
	case !slices.Contains(failurePolicies, y.OnFailure):
		l.errorf(l.d.where(&y.OnFailure, o.Pos), "%s: unknown on_failure %s: expected %s%s", join(path, "on_failure"), l.quote(&y.OnFailure), quoteList(failurePolicies), DidYouMean(y.OnFailure, failurePolicies))
	case y.OnFailure == string(FailureDLQ) && !l.cfg.DLQ.Enabled:
		l.errorf(l.d.where(&y.OnFailure, o.Pos), "%s: on_failure dlq needs the DLQ, but dlq.enabled is false: enable it or use log or alert", join(path, "on_failure"))
	default:
		o.OnFailure = FailurePolicy(y.OnFailure)
	}
	return o
}

// resolveEntity sets the observer's table from entity or table.
func (l *loader) resolveEntity(o *Observer, y *observerYAML, path string, tableOps bool) {
	key, name, ptr := "entity", y.Entity, &y.Entity
	switch {
	case l.d.has(&y.Entity) && l.d.has(&y.Table):
		l.errorf(l.d.keyWhere(&y.Table, o.Pos), "%s: entity and table are the same setting: give only one", path)
		return
	case l.d.has(&y.Table):
		key, name, ptr = "table", y.Table, &y.Table
	}
	pos := l.d.where(ptr, o.Pos)
	o.Entity, o.EntityPos = name, l.d.where(ptr, Pos{})
	if name == "" {
		if tableOps {
			l.errorf(pos, "%s: entity is required: an alias from entities:, \"schema.table\", \"table\" or \"*\"", path)
		}
		return
	}
	if !tableOps {
		l.warnf(pos, "%s: %s has no effect on CUSTOM messages, which belong to no table", path, key)
	}
	if name == "*" {
		o.Wildcard = true
		return
	}
	if t, ok := l.cfg.Entities[name]; ok {
		o.Table = t
		return
	}
	t, err := parseTableRef(name)
	if err != nil {
		aliases := make([]string, 0, len(l.cfg.Entities))
		for a := range l.cfg.Entities {
			aliases = append(aliases, a)
		}
		slices.Sort(aliases)
		l.errorf(pos, "%s: %s %s is neither an alias from entities: nor a table name: %v%s", path, key, l.quote(ptr), err, DidYouMean(name, aliases))
		return
	}
	if !strings.Contains(name, ".") && strings.ToLower(name) != name {
		l.warnf(pos, "%s: %s %s is not an alias under entities:, so it names the table public.%s (case-sensitive)", path, key, l.quote(ptr), l.quote(ptr))
	}
	o.Table = t
}

// decodeOps decodes event_type: one name or a list, case-insensitive.
func (l *loader) decodeOps(e entry, path string) []decoder.Op {
	v, ok := l.d.value(e.value, path)
	if !ok || v.kind == kindNull {
		return nil
	}
	var items []value
	switch v.kind {
	case kindString:
		items = []value{v}
	case kindSequence:
		for i, el := range v.sequence() {
			iv, ok := l.d.value(el, index(path, i))
			if !ok {
				return nil
			}
			items = append(items, iv)
		}
		if len(items) == 0 {
			l.errorf(v.pos, "%s: the list is empty: name at least one of INSERT, UPDATE, DELETE, TRUNCATE, READ, CUSTOM (or leave event_type out for INSERT, UPDATE, DELETE)", path)
			return nil
		}
	default:
		l.d.typeError(v, path, "an event type or a list of them")
		return nil
	}
	names := make([]string, len(eventTypes))
	for i, et := range eventTypes {
		names[i] = et.name
	}
	var ops []decoder.Op
	bad := false
	for _, it := range items {
		if it.kind != kindString {
			l.d.typeError(it, path, "an event type (INSERT, UPDATE, DELETE, TRUNCATE, READ or CUSTOM)")
			bad = true
			continue
		}
		up := strings.ToUpper(strings.TrimSpace(it.str))
		i := slices.IndexFunc(eventTypes, func(et struct {
			name string
			op   decoder.Op
		}) bool {
			return et.name == up
		})
		if i < 0 {
			l.errorf(it.pos, "%s: unknown event type %s: expected INSERT, UPDATE, DELETE, TRUNCATE, READ or CUSTOM%s", path, it.show(), DidYouMean(up, names))
			bad = true
			continue
		}
		if slices.Contains(ops, eventTypes[i].op) {
			l.errorf(it.pos, "%s: %s is listed twice", path, up)
			bad = true
			continue
		}
		ops = append(ops, eventTypes[i].op)
	}
	if bad {
		return nil
	}
	return ops
}

// decodeActions reads each action's type and name and keeps the rest raw.
func (l *loader) decodeActions(o *Observer, e entry, path string) {
	v, ok := l.d.value(e.value, path)
	if !ok {
		return
	}
	if v.kind != kindSequence || len(v.sequence()) == 0 {
		if v.kind == kindSequence || v.kind == kindNull {
			l.errorf(l.doc.posOf(e.value), "%s: the list is empty: an observer needs at least one action", path)
		} else {
			l.d.typeError(v, path, "a list of actions (- type: webhook ...)")
		}
		return
	}
	names := make(map[string]Pos)
	for i, el := range v.sequence() {
		apath := index(path, i)
		av, ok := l.d.value(el, apath)
		if !ok {
			continue
		}
		if av.kind != kindMapping {
			l.d.typeError(av, apath, "an action mapping with a type key")
			continue
		}
		a := &Action{Pos: av.pos, TypePos: av.pos, rawMapping: rawMapping{node: av.mapping(), doc: l.doc}}
		hasType, dupName := false, false
		for _, ae := range l.d.entries(av.mapping(), apath) {
			switch ae.key {
			case "type":
				hasType = true
				a.TypePos = l.doc.posOf(ae.value)
				tv, _ := l.d.decode(ae.value, reflect.ValueOf(&a.Type).Elem(), join(apath, "type"))
				if a.Type != "" && !validActionType(a.Type) {
					l.errorf(a.TypePos, "%s: invalid action type %s: expected a sink name such as webhook, slack, email or nats", join(apath, "type"), tv.show())
				}
			case "name":
				namePos := l.doc.posOf(ae.value)
				nv, _ := l.d.decode(ae.value, reflect.ValueOf(&a.Name).Elem(), join(apath, "name"))
				if err := checkName(a.Name, 63); err != nil {
					l.errorf(namePos, "%s: invalid action name %s: %v", join(apath, "name"), nv.show(), err)
					a.Name = ""
					continue
				}
				if first, dup := names[a.Name]; dup {
					l.errorf(namePos, "%s: duplicate action name %q in observer %s (first used at line %d, column %d)", join(apath, "name"), a.Name, o.Name, first.Line, first.Column)
					dupName = true
				}
				names[a.Name] = namePos
			case "ordered":
				l.d.decode(ae.value, reflect.ValueOf(&a.Ordered).Elem(), join(apath, "ordered"))
			case "max_concurrency":
				before := len(l.errs.List)
				cv, ok := l.d.decode(ae.value, reflect.ValueOf(&a.MaxConcurrency).Elem(), join(apath, "max_concurrency"))
				decoded := ok && cv.kind != kindNull && len(l.errs.List) == before
				if decoded && (a.MaxConcurrency < 1 || a.MaxConcurrency > maxConcurrency) {
					l.errorf(l.doc.posOf(ae.value), "%s: must be between 1 and %d, got %d", join(apath, "max_concurrency"), maxConcurrency, a.MaxConcurrency)
					a.MaxConcurrency = 0
				}
			}
		}
		if !hasType || a.Type == "" {
			if !hasType {
				l.errorf(a.Pos, "%s: type is required (webhook, slack, email, nats, ...)", apath)
			} else {
				l.errorf(a.TypePos, "%s: type must not be empty", apath)
			}
		}
		if dupName {
			continue // reported; do not report its id as well
		}
		a.ID = o.Name + "." + strconv.Itoa(i)
		if a.Name != "" {
			a.ID = o.Name + "." + a.Name
		}
		o.Actions = append(o.Actions, a)
	}
}

// validActionType reports whether t looks like a sink type name.
func validActionType(t string) bool {
	for i, c := range t {
		if !('a' <= c && c <= 'z' || c == '_' || '0' <= c && c <= '9' && i > 0) {
			return false
		}
	}
	return t != ""
}

// resolveRetry checks the retry policy and sets o.Retry.
func (l *loader) resolveRetry(o *Observer, r *retryYAML, path string) {
	at := func(ptr any) Pos { return l.d.where(ptr, o.Pos) }
	ok := true
	if r.MaxAttempts < 1 {
		l.errorf(at(&r.MaxAttempts), "%s.max_attempts: must be at least 1 (1 means no retry), got %d", path, r.MaxAttempts)
		ok = false
	}
	if !slices.Contains(backoffs, r.BackoffStrategy) {
		l.errorf(at(&r.BackoffStrategy), "%s.backoff_strategy: unknown strategy %s: expected %s%s", path, l.quote(&r.BackoffStrategy), quoteList(backoffs), DidYouMean(r.BackoffStrategy, backoffs))
		ok = false
	}
	initial, okInitial := l.millisOrDuration(path, "initial_delay", &r.InitialDelay, &r.InitialDelayMS, o.Pos)
	maxDelay, okMax := l.millisOrDuration(path, "max_delay", &r.MaxDelay, &r.MaxDelayMS, o.Pos)
	if okInitial && okMax && maxDelay < initial {
		pos := at(&r.MaxDelay)
		if l.d.has(&r.MaxDelayMS) {
			pos = at(&r.MaxDelayMS)
		}
		l.errorf(pos, "%s.max_delay: must be at least initial_delay (%s), got %s", path, initial, maxDelay)
		ok = false
	}
	if ok && okInitial && okMax {
		o.Retry = Retry{MaxAttempts: r.MaxAttempts, BackoffStrategy: Backoff(r.BackoffStrategy), InitialDelay: initial, MaxDelay: maxDelay}
	}
}

// millisOrDuration resolves a delay given as a duration (name) or as
// milliseconds (name_ms), which are mutually exclusive. It must be positive.
func (l *loader) millisOrDuration(path, name string, dur *time.Duration, ms *int64, fallback Pos) (time.Duration, bool) {
	switch {
	case l.d.has(dur) && l.d.has(ms):
		l.errorf(l.d.keyWhere(ms, fallback), "%s: %s and %s_ms are the same setting: give only one", path, name, name)
		return 0, false
	case l.d.has(ms):
		if *ms <= 0 || *ms > int64(time.Duration(1<<63-1)/time.Millisecond) {
			l.errorf(l.d.where(ms, fallback), "%s.%s_ms: must be a positive number of milliseconds, got %d", path, name, *ms)
			return 0, false
		}
		return time.Duration(*ms) * time.Millisecond, true
	}
	if *dur <= 0 {
		l.errorf(l.d.where(dur, fallback), "%s.%s: must be positive, got %s", path, name, fmt.Sprint(*dur))
		return 0, false
	}
	return *dur, true
}
