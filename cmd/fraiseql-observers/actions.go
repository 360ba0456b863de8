package main

import (
	"context"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/database"
	"github.com/fraiseql/fraiseql-observers/sinks/email"
	"github.com/fraiseql/fraiseql-observers/sinks/file"
	"github.com/fraiseql/fraiseql-observers/sinks/kafka"
	"github.com/fraiseql/fraiseql-observers/sinks/logaction"
	natssink "github.com/fraiseql/fraiseql-observers/sinks/nats"
	"github.com/fraiseql/fraiseql-observers/sinks/rabbitmq"
	"github.com/fraiseql/fraiseql-observers/sinks/redis"
	"github.com/fraiseql/fraiseql-observers/sinks/search"
	"github.com/fraiseql/fraiseql-observers/sinks/slack"
	"github.com/fraiseql/fraiseql-observers/sinks/webhook"
)

// actionTypes is the registration table: one line per action type, naming the
// constructor of its sink package (docs/contributing.md, "adding an action type").
var actionTypes = map[string]actionType{
	"cache":        register(redis.NewCache),
	"database":     register(database.New),
	"email":        register(email.New),
	"file":         register(file.New),
	"kafka":        register(kafka.New),
	"log":          register(logaction.New),
	"nats":         register(natssink.New),
	"rabbitmq":     register(rabbitmq.New),
	"redis_stream": register(redis.NewStream),
	"search":       register(search.New),
	"slack":        register(slack.New),
	"stdout":       register(file.NewStdout),
	"webhook":      register(webhook.New),
}

// sinkConfig is what the Config of every action type is, through a pointer.
type sinkConfig[C any] interface {
	*C
	// Defaults fills the keys left out (idempotent).
	Defaults()
	// Validate checks, changing nothing; its errors are *sinks.KeyError (or
	// joined ones), or plain errors about the action as a whole.
	Validate() error
}

// actionType is what the builder knows of an action type: how to decode, check and
// construct it. register makes one from the type's constructor.
type actionType struct {
	build func(ctx context.Context, a *configs.Action, deps sinks.Deps, validateOnly bool) (built, error)
	// usesDB reports whether an action of the type calls the source database
	// through sinks.Deps.DB (sinks.DBUser).
	usesDB func(a *configs.Action) bool
	// templates returns the action's {{ }} templates (sinks.Templater), none when
	// its keys do not decode (reported by the configuration check).
	templates func(a *configs.Action) []sinks.TemplateSource
}

// built is the outcome of an action type's build.
type built struct {
	sink pipeline.Sink // nil when validateOnly
	// batch is the action's batch_size (1 for a type that does not batch, 0 for
	// pipeline.batch_size).
	batch int
	// warnings are *sinks.KeyError findings of a valid configuration (sinks.Warner).
	warnings []error
}

// register makes the actionType of a sink package from its constructor
// New(ctx, Config, sinks.Deps) (*Sink, error): it decodes the action's keys into
// the Config (strictly, every problem at its file:line:column), fills the defaults
// and validates them, and, unless validateOnly, constructs the sink.
func register[C any, P sinkConfig[C], S pipeline.Sink](newSink func(context.Context, C, sinks.Deps) (S, error)) actionType {
	decode := func(a *configs.Action) (P, error) {
		cfg := P(new(C))
		if err := a.Decode(cfg); err != nil {
			return nil, err
		}
		cfg.Defaults()
		return cfg, nil
	}
	return actionType{
		build: func(ctx context.Context, a *configs.Action, deps sinks.Deps, validateOnly bool) (built, error) {
			cfg, err := decode(a)
			if err != nil {
				return built{}, err
			}
			var b built
			b.batch = 1
			if bc, ok := any(cfg).(sinks.Batcher); ok {
				b.batch = bc.BatchLimit()
			}
			if w, ok := any(cfg).(sinks.Warner); ok {
				b.warnings = w.Warnings()
			}
			if validateOnly {
				return b, cfg.Validate()
			}
			s, err := newSink(ctx, *cfg, deps)
			if err != nil {
				return built{}, err
			}
			b.sink = s
			return b, nil
		},
		usesDB: func(a *configs.Action) bool {
			cfg, err := decode(a)
			if err != nil {
				return false
			}
			u, ok := any(cfg).(sinks.DBUser)
			return ok && u.UsesDB()
		},
		templates: func(a *configs.Action) []sinks.TemplateSource {
			cfg, err := decode(a)
			if err != nil {
				return nil
			}
			if t, ok := any(cfg).(sinks.Templater); ok {
				return t.Templates()
			}
			return nil
		},
	}
}
