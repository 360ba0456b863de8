package transport

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/sinks"
	natssink "github.com/fraiseql/fraiseql-observers/sinks/nats"
)

// Types of transport.
const (
	// TypeInProcess runs the actions in the process that reads the slot (the default).
	TypeInProcess = "in_process"
	// TypeNATS puts a JetStream stream between the slot reader and the executors.
	TypeNATS = "nats"
)

// Defaults of the nats transport.
const (
	DefaultStream          = "fraiseql_events"
	DefaultSubjectPrefix   = "fraiseql.mutation"
	DefaultPartitions      = 16
	DefaultReplicas        = 1
	DefaultDuplicateWindow = 5 * time.Minute
	DefaultMaxPending      = 1024
	DefaultTimeout         = 5 * time.Second
	DefaultLeaseTTL        = 10 * time.Second
	DefaultAckWait         = 30 * time.Second
	// MaxPartitions bounds partitions: each is a durable consumer and a KV key.
	MaxPartitions = 1024
)

// Config is the `transport` section. Zero values mean the documented defaults, which
// Defaults fills; Validate only checks. The connection keys are those of the nats
// action (url/url_env, ca_file, creds_file, user_env/password_env, token_env,
// nkey_seed_env, dial_timeout).
type Config struct {
	// Type is in_process (default) or nats.
	Type string `yaml:"type"`

	natssink.Connection `yaml:",inline"`

	// Stream is the JetStream stream holding the events (fraiseql_events).
	Stream string `yaml:"stream"`
	// SubjectPrefix: events go to <subject_prefix>.<partition> (fraiseql.mutation).
	SubjectPrefix string `yaml:"subject_prefix"`
	// Partitions is the number of partitions (16); the unit of ownership and order.
	// It cannot change while the stream holds events of another count.
	Partitions int `yaml:"partitions"`
	// Replicas is the stream's replica count when the service creates it (1; 3 on a
	// three-node cluster).
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is the stream's duplicate window when created (5m); an existing
	// stream's must be at least this long.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MaxPending bounds the publishes awaiting their PubAck (1024); the reader stops
	// reading the slot while the window is full.
	MaxPending int `yaml:"max_pending"`
	// Timeout bounds each PubAck and each JetStream API call (5s).
	Timeout time.Duration `yaml:"timeout"`
	// LeaseTTL is how long a partition stays owned by an executor that stopped
	// renewing it (10s): the bound on moving the partitions of a dead executor.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// AckWait is how long JetStream waits for an executor's ack before it delivers a
	// message again (30s); the executor reports progress on slow events.
	AckWait time.Duration `yaml:"ack_wait"`
}

// Defaults fills the keys left out.
func (c *Config) Defaults() {
	if c.Type == "" {
		c.Type = TypeInProcess
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = natssink.DefaultDialTimeout
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
}

// Validate checks the section; zero values pass as their defaults. For type
// in_process no other key may be set. Its errors are *sinks.KeyError naming the
// key (the wiring reports them at the key's file:line:column) and never quote a
// secret or the URL.
func (c *Config) Validate() error {
	switch c.Type {
	case "", TypeInProcess:
		for _, k := range []struct {
			name string
			set  bool
		}{
			{"url", c.URL.IsSet()}, {"ca_file", c.CAFile != ""}, {"creds_file", c.CredsFile != ""},
			{"dial_timeout", c.DialTimeout != 0}, {"user_env", c.User.IsSet()}, {"password_env", c.Password.IsSet()},
			{"token_env", c.Token.IsSet()}, {"nkey_seed_env", c.NKeySeed.IsSet()},
			{"stream", c.Stream != ""}, {"subject_prefix", c.SubjectPrefix != ""}, {"partitions", c.Partitions != 0},
			{"replicas", c.Replicas != 0}, {"duplicate_window", c.DuplicateWindow != 0}, {"max_pending", c.MaxPending != 0},
			{"timeout", c.Timeout != 0}, {"lease_ttl", c.LeaseTTL != 0}, {"ack_wait", c.AckWait != 0},
		} {
			if k.set {
				return keyErr(k.name, errors.New("a key of the nats transport, which needs type: nats"))
			}
		}
		return nil
	case TypeNATS:
	default:
		return keyErr("type", fmt.Errorf("must be in_process or nats, not %q", c.Type))
	}
	if err := c.Connection.Check(); err != nil {
		return err
	}
	if c.Stream != "" && !validName(c.Stream) {
		return keyErr("stream", errors.New("a stream name has no spaces, '.', '*', '>', '/' or '\\'"))
	}
	if c.SubjectPrefix != "" {
		if err := natssink.CheckSubject(c.SubjectPrefix); err != nil {
			return keyErr("subject_prefix", err)
		}
	}
	switch {
	case c.Partitions < 0 || c.Partitions > MaxPartitions:
		return keyErr("partitions", fmt.Errorf("must be between 1 and %d, got %d", MaxPartitions, c.Partitions))
	case c.Replicas < 0 || c.Replicas > 5:
		return keyErr("replicas", fmt.Errorf("must be between 1 and 5, got %d", c.Replicas))
	case c.DuplicateWindow < 0:
		return keyErr("duplicate_window", errors.New("must not be negative"))
	case c.MaxPending < 0:
		return keyErr("max_pending", errors.New("must not be negative"))
	case c.Timeout < 0:
		return keyErr("timeout", errors.New("must not be negative"))
	case c.LeaseTTL < 0 || (c.LeaseTTL > 0 && c.LeaseTTL < time.Second):
		return keyErr("lease_ttl", errors.New("must be at least 1s"))
	case c.AckWait < 0 || (c.AckWait > 0 && c.AckWait < time.Second):
		return keyErr("ack_wait", errors.New("must be at least 1s"))
	}
	return nil
}

func validName(s string) bool { return s != "" && !strings.ContainsAny(s, " \t\r\n.*>/\\") }

func keyErr(key string, err error) error { return sinks.KeyErrorf(key, err) }
