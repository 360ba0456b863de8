package main

import (
	"errors"
	"strings"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// sinkConfigError reports a sink's configuration error at the position of the key it
// names (a *sinks.KeyError), or of the key's *_env form when that is the one written;
// a nested key ("smtp.port") at the value of its top-level key; other errors at the
// action.
func sinkConfigError(a *configs.Action, err error) error {
	var ke *sinks.KeyError
	if !errors.As(err, &ke) {
		return a.Errorf("%v", err)
	}
	if top, _, nested := strings.Cut(ke.Key, "."); nested {
		return &configs.Error{Pos: a.KeyPos(top), Msg: "action " + a.ID + ": " + ke.Error()}
	}
	key := ke.Key
	for _, k := range []string{ke.Key, ke.Key + "_env", ke.Key + "s_env"} {
		if a.Has(k) {
			key = k
			break
		}
	}
	var ee *eval.Error
	if errors.As(ke.Err, &ee) && a.Has(key) {
		// A template error points into the template: move there in the file.
		return &configs.Error{Pos: exprPos(a.KeyPos(key), ee), Msg: "action " + a.ID + ": " + key + ": " + exprMsg(ee)}
	}
	return a.ErrorfAt(key, "%v", ke.Err)
}

// exclusive returns an error at the second of keys written when more than one is.
func exclusive(a *configs.Action, keys ...string) error {
	var given []string
	for _, k := range keys {
		if a.Has(k) {
			given = append(given, k)
		}
	}
	if len(given) > 1 {
		return a.ErrorfAt(given[1], "%s are mutually exclusive; give only one", strings.Join(keys, " and "))
	}
	return nil
}

// entity returns the entity name of the observer holding a, as its templates and
// condition see it ("" for a wildcard observer: the event's schema.table).
func (b *builder) entity(a *configs.Action) string {
	for _, o := range b.cfg.Observers {
		for _, oa := range o.Actions {
			if oa == a {
				return observerEntity(o)
			}
		}
	}
	return ""
}

// observerEntity is the `entity` an observer's conditions and templates see.
func observerEntity(o *configs.Observer) string {
	if o.Wildcard {
		return ""
	}
	return o.Entity
}
