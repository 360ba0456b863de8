package configs

import (
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// Config is a loaded, validated configuration. Load and Parse return it with
// every default applied; it is read-only afterwards and safe for concurrent
// reads. docs/configuration.md documents every key.
type Config struct {
	// File is the name the configuration was loaded from.
	File string `yaml:"-"`
	// ListenerID names this instance in leases, checkpoints and status output.
	ListenerID          string              `yaml:"listener_id"`
	Source              Source              `yaml:"source"`
	State               State               `yaml:"state"`
	Checkpoints         Checkpoints         `yaml:"checkpoints"`
	ConcurrentExecution ConcurrentExecution `yaml:"concurrent_execution"`
	Deduplication       Deduplication       `yaml:"deduplication"`
	Caching             Caching             `yaml:"caching"`
	DLQ                 DLQ                 `yaml:"dlq"`
	Pipeline            Pipeline            `yaml:"pipeline"`
	Evaluation          Evaluation          `yaml:"evaluation"`
	Admin               Admin               `yaml:"admin"`
	Failover            Failover            `yaml:"failover"`
	// ReplayWindow keeps delivered history in the slot for replays; zero is off.
	ReplayWindow ReplayWindow `yaml:"replay_window"`
	// Snapshot configures backfills of the rows tables already hold.
	Snapshot Snapshot `yaml:"snapshot"`
	Logging  Logging  `yaml:"logging"`
	// Transport is the transport section (type in_process or nats), decoded by the
	// service into the transport package's Config.
	Transport Section `yaml:"-"`
	// Entities maps alias names used by observers' entity key to tables.
	Entities map[string]TableRef `yaml:"-"`
	// Observers are in the order of the file.
	Observers []*Observer `yaml:"-"`

	unset []Unset // see Unset
}

// Source is where changes come from: the database, its slot and publication.
type Source struct {
	// DSN is the libpq connection string: source.dsn, or the value of the
	// variable source.dsn_env names. Use Config.DSN to get it.
	DSN Secret `yaml:"dsn,env"`
	// Slot is the logical replication slot (pgoutput).
	Slot string `yaml:"slot"`
	// Publication is the publication the slot streams.
	Publication string `yaml:"publication"`
	// ManageSlot creates the slot when it is missing.
	ManageSlot bool `yaml:"manage_slot"`
	// ManagePublication creates the publication, for PublicationTables, when it
	// is missing.
	ManagePublication bool       `yaml:"manage_publication"`
	PublicationTables []TableRef `yaml:"publication_tables"`
	// StatusInterval is the period of standby status updates (0 < d ≤ 60s).
	StatusInterval time.Duration `yaml:"status_interval"`
	// ReceiveTimeout is how long the replication stream may stay silent before the
	// connection is replaced; 0 means 2 × StatusInterval + 5s.
	ReceiveTimeout time.Duration `yaml:"receive_timeout"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	Reconnect      Reconnect     `yaml:"reconnect"`
	// MaxEventBytes sends larger changes to the DLQ; 0 is unlimited.
	MaxEventBytes Size `yaml:"max_event_bytes"`
	// HeartbeatInterval emits pg_logical_emit_message heartbeats; 0 is off.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
}

// Reconnect is the capped exponential backoff between replication sessions.
type Reconnect struct {
	InitialDelay time.Duration `yaml:"initial_delay"`
	MaxDelay     time.Duration `yaml:"max_delay"`
}

// State is where the service keeps its own tables (observer_checkpoints,
// observer_dlq, the lease table).
type State struct {
	Schema string `yaml:"schema"`
}

// Checkpoints stores each action's progress in observer_checkpoints.
type Checkpoints struct {
	Enabled  bool          `yaml:"enabled"`
	Interval time.Duration `yaml:"interval"`
}

// ConcurrentExecution runs each action with a pool of workers partitioned by
// primary key.
type ConcurrentExecution struct {
	Enabled        bool `yaml:"enabled"`
	MaxConcurrency int  `yaml:"max_concurrency"`
}

// Deduplication skips events already delivered, by event id.
type Deduplication struct {
	Enabled      bool `yaml:"enabled"`
	CacheEntries int  `yaml:"cache_entries"`
}

// Caching keeps recent row images to supply old images and unchanged TOAST values.
type Caching struct {
	Enabled  bool `yaml:"enabled"`
	MaxBytes Size `yaml:"max_bytes"`
}

// DLQ is the dead-letter queue table for events whose actions failed.
type DLQ struct {
	Enabled bool `yaml:"enabled"`
	// MaxDLQSize caps the number of pending items; 0 is unbounded.
	MaxDLQSize int64 `yaml:"max_dlq_size"`
}

// Pipeline bounds the work in flight between the stream and the sinks.
type Pipeline struct {
	MaxInFlightBytes Size          `yaml:"max_in_flight_bytes"`
	BatchSize        int           `yaml:"batch_size"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout"`
}

// Evaluation bounds what one evaluation of a condition or template may do: a breach
// fails that event for that observer (its on_failure policy, the DLQ by default).
type Evaluation struct {
	// MaxSteps bounds the predicate iterations (all, any, map, filter, ...) and
	// size-checked function calls of one evaluation.
	MaxSteps int64 `yaml:"max_steps"`
	// Timeout bounds the wall-clock time of one evaluation.
	Timeout time.Duration `yaml:"timeout"`
	// MaxMemoryBytes bounds the bytes of strings and lists one evaluation builds.
	MaxMemoryBytes Size `yaml:"max_memory_bytes"`
	// MaxRenderedBytes bounds the size of one rendered template.
	MaxRenderedBytes Size `yaml:"max_rendered_bytes"`
}

// Admin is the HTTP endpoint for /metrics, status and DLQ operations.
type Admin struct {
	// Listen is host:port; "" disables the endpoint.
	Listen string `yaml:"listen"`
	// Token is the bearer token the endpoint requires, from the environment
	// variable admin.token_env names.
	Token Secret `yaml:"token_env,env"`
	// TLSCertFile and TLSKeyFile make the endpoint serve HTTPS (both or neither).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TLSCAFile is the CA the CLI verifies the endpoint's certificate with (default:
	// the system's roots).
	TLSCAFile string `yaml:"tls_ca_file"`
}

// Failover coordinates hot standbys through a lease in PostgreSQL.
type Failover struct {
	Enabled       bool          `yaml:"enabled"`
	LeaseDuration time.Duration `yaml:"lease_duration"`
	RenewInterval time.Duration `yaml:"renew_interval"`
}

// Snapshot configures backfills: rows a table already holds, read in chunks while
// the stream goes on and delivered as READ events.
type Snapshot struct {
	// Mode is SnapshotNever or SnapshotInitial.
	Mode string `yaml:"mode"`
	// ChunkSize is the number of rows read per chunk.
	ChunkSize int `yaml:"chunk_size"`
	// RowsPerSecond limits the rows read per second; 0 is no limit.
	RowsPerSecond float64 `yaml:"rows_per_second"`
}

// Snapshot modes.
const (
	SnapshotNever   = "never"   // only the snapshot command starts backfills
	SnapshotInitial = "initial" // backfill every table with a READ observer once, the first time the slot is streamed
)

// Logging configures the root logger.
type Logging struct {
	// Level is trace, debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or console.
	Format string `yaml:"format"`
}

// Observer matches change events and runs actions for them.
type Observer struct {
	// Name is the observer's key under observers.
	Name string
	// Pos is where the observer's name is written.
	Pos Pos
	// Entity is the entity or table as written ("Order", "public.orders", "*");
	// "" for an observer of CUSTOM messages only.
	Entity string
	// EntityPos is where entity (or table) is written; zero when absent.
	EntityPos Pos
	// Table is the resolved table; zero when Wildcard or Entity is "".
	Table TableRef
	// Wildcard is set for entity "*": every table.
	Wildcard bool
	// Ops are the operations observed, without duplicates; CUSTOM is
	// decoder.OpMessage.
	Ops []decoder.Op
	// MessagePrefix selects logical decoding messages for CUSTOM.
	MessagePrefix string
	// Condition is the expression source; "" means always.
	Condition string
	// ConditionPos is where the condition's text starts (after an opening quote,
	// on the first content line of a block scalar), for positions of compile
	// errors and of columns the condition reads; zero when absent.
	ConditionPos Pos
	Actions      []*Action
	Retry        Retry
	OnFailure    FailurePolicy
}

// Retry is an observer's retry policy for its actions.
type Retry struct {
	// MaxAttempts counts the first attempt: 1 means no retry.
	MaxAttempts     int
	BackoffStrategy Backoff
	InitialDelay    time.Duration
	MaxDelay        time.Duration
}

// Backoff is how the delay between attempts grows.
type Backoff string

// Backoff strategies.
const (
	BackoffExponential Backoff = "exponential" // initial × 2^(attempt−1), capped, with jitter
	BackoffLinear      Backoff = "linear"      // initial × attempt, capped
	BackoffFixed       Backoff = "fixed"       // initial
)

// FailurePolicy is what happens to an event whose action failed for good.
type FailurePolicy string

// Failure policies.
const (
	FailureLog   FailurePolicy = "log"   // log it and settle the event
	FailureAlert FailurePolicy = "alert" // log it at error level, count it in a metric, settle it
	FailureDLQ   FailurePolicy = "dlq"   // persist it in the DLQ table, then settle it
)

// Default returns a configuration holding every default, without a source DSN
// and without observers. Each call returns a new value.
func Default() *Config {
	return &Config{
		ListenerID: "listener-1",
		Source: Source{
			Slot:           "fraiseql_observers",
			Publication:    "fraiseql_observers",
			StatusInterval: 10 * time.Second,
			ConnectTimeout: 10 * time.Second,
			Reconnect:      Reconnect{InitialDelay: time.Second, MaxDelay: 60 * time.Second},
			MaxEventBytes:  64 << 20,
		},
		State:               State{Schema: "public"},
		Checkpoints:         Checkpoints{Enabled: true, Interval: time.Second},
		ConcurrentExecution: ConcurrentExecution{Enabled: true, MaxConcurrency: 10},
		Deduplication:       Deduplication{Enabled: true, CacheEntries: 100_000},
		Caching:             Caching{Enabled: true, MaxBytes: 16 << 20},
		DLQ:                 DLQ{Enabled: true},
		Pipeline:            Pipeline{MaxInFlightBytes: 16 << 20, BatchSize: 100, ShutdownTimeout: 30 * time.Second},
		Evaluation:          Evaluation{MaxSteps: 1_000_000, Timeout: 100 * time.Millisecond, MaxMemoryBytes: 64 << 20, MaxRenderedBytes: 10 << 20},
		Admin:               Admin{Listen: "127.0.0.1:9187"},
		Failover:            Failover{LeaseDuration: 10 * time.Second, RenewInterval: 3 * time.Second},
		Snapshot:            Snapshot{Mode: SnapshotNever, ChunkSize: 1024},
		Logging:             Logging{Level: "info", Format: "json"},
		Entities:            map[string]TableRef{},
	}
}

// DefaultRetry is the retry policy of an observer without a retry key.
func DefaultRetry() Retry {
	return Retry{MaxAttempts: 3, BackoffStrategy: BackoffExponential, InitialDelay: 100 * time.Millisecond, MaxDelay: 30 * time.Second}
}
