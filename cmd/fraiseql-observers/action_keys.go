package main

import (
	"errors"
	"strings"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/service"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// sinkConfigErrors reports each of a sink's configuration errors (err may join
// several) as sinkConfigError does. Errors Action.Decode returned are positioned
// already. An error about a key whose value is unknown (its variable is unset,
// configs.Options.DeferEnv) is left out: the value was not checked.
func sinkConfigErrors(a *configs.Action, err error, unset []configs.Unset) error {
	var out []error
	for _, e := range leaves(err, nil) {
		var ce *configs.Error
		if errors.As(e, &ce) {
			out = append(out, e)
			continue
		}
		var ke *sinks.KeyError
		if errors.As(e, &ke) && unknownKey(ke.Key, unset) {
			continue
		}
		out = append(out, sinkConfigError(a, e))
	}
	return errors.Join(out...)
}

// unknownKey reports whether key ("url", "smtp.host") or its *_env form holds a
// variable that was not set.
func unknownKey(key string, unset []configs.Unset) bool {
	for _, u := range unset {
		k := u.Key
		if i := strings.IndexByte(k, '['); i >= 0 {
			k = k[:i]
		}
		if k == key || k == key+"_env" || k == key+"s_env" || strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

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
		return &configs.Error{Pos: service.ExprPos(a.KeyPos(key), ee), Msg: "action " + a.ID + ": " + key + ": " + exprMsg(ee)}
	}
	return a.ErrorfAt(key, "%v", ke.Err)
}

// observerEntity is the `entity` an observer's conditions and templates see.
func observerEntity(o *configs.Observer) string {
	if o.Wildcard {
		return ""
	}
	return o.Entity
}
