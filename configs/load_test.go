package configs

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// env is a fake environment for Parse.
type env map[string]string

func (e env) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// parseErrors parses src as c.yaml and returns its errors; it fails the test
// when src loads or the error is not an *Errors.
func parseErrors(t *testing.T, src string, e env) []*Error {
	t.Helper()
	cfg, _, err := Parse("c.yaml", []byte(src), e.lookup)
	if err == nil {
		t.Fatalf("unexpected success; got config %+v", cfg)
	}
	if cfg != nil {
		t.Fatalf("unexpected config with an error")
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
	return errs.List
}

// mustParse parses src as c.yaml and fails the test on an error.
func mustParse(t *testing.T, src string, e env) (*Config, []Warning) {
	t.Helper()
	cfg, warns, err := Parse("c.yaml", []byte(src), e.lookup)
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	return cfg, warns
}

// hasError reports whether errs has an error at pos whose message contains frag.
func hasError(errs []*Error, pos, frag string) bool {
	for _, e := range errs {
		if e.Pos.String() == pos && strings.Contains(e.Msg, frag) {
			return true
		}
	}
	return false
}

// src is the minimal valid source section; observers start on line 3.
const src = "source:\n  dsn: postgres://app@db/app\n"

// obs is a valid observer "o" on lines 3–7; its body keys are at column 5.
const obs = src + "observers:\n  o:\n    entity: public.orders\n    actions:\n      - type: webhook\n"

// TestMalformed is reliability test B1: every malformed configuration gives
// an error at the right file:line:column naming the key and the rule.
func TestMalformed(t *testing.T) {
	long := strings.Repeat("a", 64)
	cases := []struct {
		name string
		src  string
		pos  string
		frag string
	}{
		// The file as a whole.
		{"empty file", "", "c.yaml:1:1", "the configuration is empty"},
		{"comments only", "# nothing\n\n", "c.yaml:1:1", "the configuration is empty"},
		{"null document", "~\n", "c.yaml:1:1", "the configuration is empty"},
		{"top-level list", "- source\n", "c.yaml:1:1", "must be a mapping of keys"},
		{"top-level scalar", "hello\n", "c.yaml:1:1", "must be a mapping of keys"},
		{"two documents", src + "---\nlogging: {level: info}\n", "c.yaml:4:1", "one YAML document"},
		{"invalid UTF-8", src + "listener_id: \"a\xffb\"\n", "c.yaml:3:16", "not valid UTF-8"},

		// Invalid YAML.
		{"unclosed flow list", "source: [1, 2\n", "c.yaml:1:9", "invalid YAML"},
		{"bad indentation", "source:\n  dsn: x\n slot: y\n", "c.yaml:3:2", "invalid YAML"},
		{"tab indentation", "source:\n\tdsn: x\n", "c.yaml:2:1", "invalid YAML"},
		{"unterminated quote", "source:\n  dsn: 'x\n", "c.yaml:2:8", "invalid YAML"},
		{"undefined alias", src + "logging: *nope\n", "c.yaml:3:10", "alias *nope refers to no anchor"},
		{"custom tag", src + "listener_id: !secret x\n", "c.yaml:3:14", "YAML tag !secret is not supported"},
		{"bare star", src + "observers:\n  o:\n    entity: *\n    actions: [{type: log}]\n", "c.yaml:5:13", `invalid YAML: mapping value is not allowed in this context (a bare * starts a YAML alias: write "*" for every table)`},
		{"non-scalar key", src + "? [a, b]\n: 1\n", "c.yaml:4:1", "invalid YAML: found an invalid key for this map"},

		// Unknown and duplicate keys.
		{"unknown top-level key", src + "observer: {}\n", "c.yaml:3:1", `unknown key "observer" (did you mean "observers"?)`},
		{"unknown source key", src + "  slots: x\n", "c.yaml:3:3", `source: unknown key "slots" (did you mean "slot"?)`},
		{"retires", obs + "    retires: 3\n", "c.yaml:8:5", `observers.o: unknown key "retires" (did you mean "retry"?)`},
		{"unknown retry key", obs + "    retry: {max_attempt: 5}\n", "c.yaml:8:13", `unknown key "max_attempt" (did you mean "max_attempts"?)`},
		{"unknown key lists valid keys", src + "state: {tables: x}\n", "c.yaml:3:9", "valid keys: schema"},
		{"duplicate top-level key", src + "source:\n  dsn: postgres://x@y/z\n", "c.yaml:3:1", `duplicate key "source" (first defined at line 1, column 1)`},
		{"duplicate nested key", "source:\n  dsn: postgres://a@b/c\n  dsn: postgres://d@e/f\n", "c.yaml:3:3", `source: duplicate key "dsn"`},
		{"duplicate observer", obs + "  o:\n    entity: x\n", "c.yaml:8:3", `observers: duplicate key "o"`},

		// Wrong types.
		{"section is a string", "source: postgres://a@b/c\n", "c.yaml:1:9", "source: expected a mapping, got a string"},
		{"integer is a word", src + "concurrent_execution: {max_concurrency: ten}\n", "c.yaml:3:41", "concurrent_execution.max_concurrency: expected an integer, got a string \"ten\""},
		{"integer is quoted", src + "pipeline: {batch_size: \"100\"}\n", "c.yaml:3:24", "pipeline.batch_size: expected an integer"},
		{"integer out of range", src + "dlq: {max_dlq_size: 99999999999999999999}\n", "c.yaml:3:21", "out of range"},
		{"boolean is yes", src + "checkpoints:\n  enabled: yes\n", "c.yaml:4:12", "checkpoints.enabled: expected true or false"},
		{"list for a string", src + "listener_id: [a]\n", "c.yaml:3:14", "listener_id: expected a string, got a list"},
		{"event_type is a mapping", obs + "    event_type: {a: 1}\n", "c.yaml:8:17", "expected an event type or a list"},
		{"actions is a string", src + "observers:\n  o:\n    entity: t\n    actions: webhook\n", "c.yaml:6:14", "expected a list of actions"},
		{"action is a string", src + "observers:\n  o:\n    entity: t\n    actions: [webhook]\n", "c.yaml:6:15", "actions[0]: expected an action mapping"},
		{"observer is a list", src + "observers:\n  o: [1]\n", "c.yaml:4:6", "observers.o: expected a mapping"},

		// Durations and sizes.
		{"duration without unit", src + "  status_interval: 10\n", "c.yaml:3:20", "source.status_interval: invalid duration \"10\": a duration needs a unit"},
		{"duration in words", src + "  connect_timeout: 10 seconds\n", "c.yaml:3:20", `invalid duration "10 seconds": expected a duration such as "250ms"`},
		{"negative interval", src + "checkpoints: {interval: -1s}\n", "c.yaml:3:25", "checkpoints.interval: must be positive, got -1s"},
		{"zero interval", src + "  status_interval: 0s\n", "c.yaml:3:20", "source.status_interval: must be positive"},
		{"receive timeout not above status interval", src + "  status_interval: 10s\n  receive_timeout: 10s\n", "c.yaml:4:20", "source.receive_timeout: must be longer than status_interval (10s)"},
		{"negative receive timeout", src + "  receive_timeout: -1s\n", "c.yaml:3:20", "source.receive_timeout: must not be negative"},
		{"status interval too long", src + "  status_interval: 2m\n", "c.yaml:3:20", "must be at most 60s"},
		{"zero shutdown timeout", src + "pipeline: {shutdown_timeout: 0}\n", "c.yaml:3:30", "pipeline.shutdown_timeout: must be positive"},
		{"zero evaluation steps", src + "evaluation: {max_steps: 0}\n", "c.yaml:3:25", "evaluation.max_steps: must be at least 1, got 0"},
		{"zero evaluation timeout", src + "evaluation: {timeout: 0s}\n", "c.yaml:3:23", "evaluation.timeout: must be positive"},
		{"evaluation timeout too long", src + "evaluation:\n  timeout: 2m\n", "c.yaml:4:12", "evaluation.timeout: must be at most 1m"},
		{"zero evaluation memory", src + "evaluation: {max_memory_bytes: 0}\n", "c.yaml:3:32", "evaluation.max_memory_bytes: must be positive"},
		{"zero rendered size", src + "evaluation: {max_rendered_bytes: 0B}\n", "c.yaml:3:34", "evaluation.max_rendered_bytes: must be positive"},
		{"negative heartbeat", src + "  heartbeat_interval: -5s\n", "c.yaml:3:23", "must not be negative"},
		{"reconnect max below initial", src + "  reconnect: {initial_delay: 5s, max_delay: 1s}\n", "c.yaml:3:45", "source.reconnect.max_delay: must be at least initial_delay (5s)"},
		{"size unit", src + "  max_event_bytes: 64XB\n", "c.yaml:3:20", `source.max_event_bytes: invalid size "64XB": unknown size unit: expected B, kB`},
		{"negative size", src + "caching: {max_bytes: -1}\n", "c.yaml:3:22", "caching.max_bytes: invalid size \"-1\": must not be negative"},
		{"zero cache size", src + "caching: {max_bytes: 0}\n", "c.yaml:3:22", "caching.max_bytes: must be positive"},
		{"replay window garbage", src + "replay_window: lots\n", "c.yaml:3:16", `replay_window: invalid replay window "lots"`},
		{"replay window without checkpoints", src + "replay_window: 1h\ncheckpoints: {enabled: false}\n", "c.yaml:3:16", "replay_window: needs checkpoints.enabled"},

		// Source.
		{"missing source", "logging: {level: info}\n", "c.yaml:1:1", "source is required"},
		{"source without dsn", "source:\n  slot: s\n", "c.yaml:1:1", "source: dsn or dsn_env is required"},
		{"dsn and dsn_env", src + "  dsn_env: PGDSN\n", "c.yaml:3:3", "give either dsn or dsn_env, not both"},
		{"dsn_env unset", "source:\n  dsn_env: PGDSN\n", "c.yaml:2:12", "source.dsn_env: environment variable PGDSN is not set"},
		{"dsn_env is a reference", "source:\n  dsn_env: ${PGDSN}\n", "c.yaml:2:12", "not a reference"},
		{"dsn ftp scheme", "source:\n  dsn: ftp://db/app\n", "c.yaml:2:8", "starts with postgres:// or postgresql://"},
		{"dsn not a dsn", "source:\n  dsn: localhost\n", "c.yaml:2:8", "neither a postgres:// URL nor keyword=value pairs"},
		{"empty slot", src + "  slot: \"\"\n", "c.yaml:3:9", `source.slot: invalid slot name "": expected 1–63 characters of a-z, 0-9 and _`},
		{"slot with capitals", src + "  slot: Bad-Slot\n", "c.yaml:3:9", `invalid slot name "Bad-Slot"`},
		{"slot too long", src + "  slot: " + long + "\n", "c.yaml:3:9", "invalid slot name"},
		{"publication with dash", src + "  publication: my-pub\n", "c.yaml:3:16", `source.publication: invalid publication name "my-pub"`},
		{"manage_publication without tables", src + "  manage_publication: true\n", "c.yaml:3:23", "source.publication_tables: required when manage_publication is true"},
		{"publication table with three parts", src + "  manage_publication: true\n  publication_tables: [a.b.c]\n", "c.yaml:4:24", `source.publication_tables[0]: invalid table name "a.b.c"`},
		{"state schema", src + "state: {schema: 1abc}\n", "c.yaml:3:17", `state.schema: invalid schema name "1abc"`},

		// Other sections.
		{"listener_id with spaces", src + "listener_id: listener one\n", "c.yaml:3:14", `listener_id: invalid name "listener one"`},
		{"max_concurrency zero", src + "concurrent_execution: {max_concurrency: 0}\n", "c.yaml:3:41", "must be between 1 and 1024, got 0"},
		{"max_concurrency too big", src + "concurrent_execution: {max_concurrency: 5000}\n", "c.yaml:3:41", "must be between 1 and 1024, got 5000"},
		{"dedup cache zero", src + "deduplication: {cache_entries: 0}\n", "c.yaml:3:32", "deduplication.cache_entries: must be at least 1"},
		{"negative dlq size", src + "dlq: {max_dlq_size: -1}\n", "c.yaml:3:21", "dlq.max_dlq_size: must not be negative"},
		{"batch size zero", src + "pipeline: {batch_size: 0}\n", "c.yaml:3:24", "pipeline.batch_size: must be between 1 and 100000"},
		{"admin listen without port", src + "admin: {listen: localhost}\n", "c.yaml:3:17", `admin.listen: invalid address "localhost": expected host:port`},
		{"admin certificate without key", src + "admin: {listen: \"127.0.0.1:9187\", tls_cert_file: a.pem}\n", "c.yaml:3:50", "admin.tls_key_file: required together with the other TLS file"},
		{"admin token unset", src + "admin: {listen: \"127.0.0.1:9187\", token_env: ADMIN_TOKEN}\n", "c.yaml:3:46", "admin.token_env: environment variable ADMIN_TOKEN is not set"},
		{"renew not below lease", src + "failover: {lease_duration: 5s, renew_interval: 5s}\n", "c.yaml:3:48", "failover.renew_interval: must be shorter than lease_duration (5s)"},
		{"log level", src + "logging: {level: verbose}\n", "c.yaml:3:18", `logging.level: unknown level "verbose": expected "trace", "debug", "info", "warn" or "error"`},
		{"log level typo", src + "logging: {level: inf}\n", "c.yaml:3:18", `(did you mean "info"?)`},
		{"log format", src + "logging: {format: text}\n", "c.yaml:3:19", `logging.format: unknown format "text"`},
		{"bad entity alias", src + "entities:\n  my-order: public.orders\n", "c.yaml:4:3", `entities: invalid alias "my-order"`},
		{"entity alias without table", src + "entities:\n  Order:\n", "c.yaml:4:3", "entities.Order: expected a table name"},
		{"snapshot mode", src + "snapshot: {mode: always}\n", "c.yaml:3:18", `snapshot.mode: unknown mode "always": expected "never" or "initial"`},
		{"snapshot chunk size zero", src + "snapshot: {chunk_size: 0}\n", "c.yaml:3:24", "snapshot.chunk_size: must be between 1 and 1000000, got 0"},
		{"snapshot rate negative", src + "snapshot: {rows_per_second: -5}\n", "c.yaml:3:29", "snapshot.rows_per_second: must not be negative"},
		{"initial snapshot without READ observer", obs + "snapshot: {mode: initial}\n", "c.yaml:8:18", "snapshot.mode: initial backfills the tables of observers whose event_type lists READ, and no observer does"},
		{"initial snapshot without checkpoints", obs + "    event_type: [insert, read]\nsnapshot: {mode: initial}\ncheckpoints: {enabled: false}\n", "c.yaml:9:18", "snapshot.mode: initial needs checkpoints.enabled"},

		// Observers.
		{"observer name", src + "observers:\n  bad name:\n    entity: t\n    actions: [{type: log}]\n", "c.yaml:4:3", `invalid observer name "bad name"`},
		{"observer without actions", src + "observers:\n  o:\n    entity: t\n", "c.yaml:4:3", "observers.o: actions is required"},
		{"empty actions", src + "observers:\n  o:\n    entity: t\n    actions: []\n", "c.yaml:6:14", "observers.o.actions: the list is empty"},
		{"action without type", src + "observers:\n  o:\n    entity: t\n    actions:\n      - url: http://x\n", "c.yaml:7:9", "observers.o.actions[0]: type is required"},
		{"action type with spaces", src + "observers:\n  o:\n    entity: t\n    actions:\n      - type: Web Hook\n", "c.yaml:7:15", `invalid action type "Web Hook"`},
		{"duplicate action names", obs + "        name: a\n      - type: slack\n        name: a\n", "c.yaml:10:15", `duplicate action name "a" in observer o (first used at line 8, column 15)`},
		{"action max_concurrency zero", obs + "        max_concurrency: 0\n", "c.yaml:8:26", "observers.o.actions[0].max_concurrency: must be between 1 and 1024, got 0"},
		{"action max_concurrency text", obs + "        max_concurrency: many\n", "c.yaml:8:26", "observers.o.actions[0].max_concurrency"},
		{"action ordered not a boolean", obs + "        ordered: sometimes\n", "c.yaml:8:18", "observers.o.actions[0].ordered"},
		{"action name clashes with index", obs + "      - type: slack\n        name: \"0\"\n", "c.yaml:8:9", `action id "o.0" is already used`},
		{"missing entity", src + "observers:\n  o:\n    actions: [{type: log}]\n", "c.yaml:4:3", "observers.o: entity is required"},
		{"invalid entity", src + "observers:\n  o:\n    entity: public.or ders\n    actions: [{type: log}]\n", "c.yaml:5:13", `entity "public.or ders" is neither an alias`},
		{"entity typo of alias", src + "entities: {Order: public.orders}\nobservers:\n  o:\n    entity: Oder!\n    actions: [{type: log}]\n", "c.yaml:6:13", `(did you mean "Order"?)`},
		{"entity and table", obs + "    table: public.orders\n", "c.yaml:8:5", "entity and table are the same setting"},
		{"event type upsert", obs + "    event_type: upsert\n", "c.yaml:8:17", `unknown event type "upsert"`},
		{"event type typo", obs + "    event_type: [insert, UPDTAE]\n", "c.yaml:8:26", `(did you mean "UPDATE"?)`},
		{"event type twice", obs + "    event_type: [insert, INSERT]\n", "c.yaml:8:26", "INSERT is listed twice"},
		{"event type empty list", obs + "    event_type: []\n", "c.yaml:8:17", "the list is empty"},
		{"custom without prefix", obs + "    event_type: CUSTOM\n", "c.yaml:8:5", "event_type CUSTOM needs message_prefix"},
		{"prefix without custom", obs + "    message_prefix: app\n", "c.yaml:8:5", "message_prefix applies only to event_type CUSTOM"},
		{"max_attempts zero", obs + "    retry:\n      max_attempts: 0\n", "c.yaml:9:21", "observers.o.retry.max_attempts: must be at least 1"},
		{"backoff typo", obs + "    retry: {backoff_strategy: exponentail}\n", "c.yaml:8:31", `unknown strategy "exponentail": expected "exponential", "linear" or "fixed" (did you mean "exponential"?)`},
		{"delay and delay_ms", obs + "    retry: {initial_delay: 1s, initial_delay_ms: 100}\n", "c.yaml:8:32", "initial_delay and initial_delay_ms are the same setting"},
		{"delay_ms zero", obs + "    retry: {initial_delay_ms: 0}\n", "c.yaml:8:31", "initial_delay_ms: must be a positive number of milliseconds"},
		{"zero delay", obs + "    retry: {initial_delay: 0s}\n", "c.yaml:8:28", "observers.o.retry.initial_delay: must be positive"},
		{"max below initial", obs + "    retry: {initial_delay: 10s, max_delay: 1s}\n", "c.yaml:8:44", "max_delay: must be at least initial_delay (10s)"},
		{"on_failure unknown", obs + "    on_failure: retry\n", "c.yaml:8:17", `unknown on_failure "retry": expected "log", "alert" or "dlq"`},
		{"on_failure dlq without dlq", obs + "    on_failure: dlq\ndlq: {enabled: false}\n", "c.yaml:8:17", "on_failure dlq needs the DLQ, but dlq.enabled is false"},
		{"toggle under observers", obs + "  checkpoints:\n    enabled: false\n", "c.yaml:8:3", "`checkpoints` is a top-level setting, not an observer: move it out of `observers:` (see docs/configuration.md#feature-toggles)"},
		{"scalar toggle under observers", obs + "  replay_window: 1h\n", "c.yaml:8:3", "`replay_window` is a top-level setting"},

		// Environment variables.
		{"unset variable", src + "  slot: ${SLOT_NAME}\n", "c.yaml:3:9", "source.slot: environment variable SLOT_NAME is not set"},
		{"unterminated reference", src + "  slot: ${SLOT_NAME\n", "c.yaml:3:9", `unterminated "${"`},
		{"invalid reference", src + "  slot: ${1X}\n", "c.yaml:3:9", `invalid environment variable reference "${1X}"`},
		{"expanded value shown as written", src + "  slot: ${SLOT}\n", "c.yaml:3:9", `invalid slot name the value of "${SLOT}": expected`},
		{"expanded integer", src + "pipeline: {batch_size: \"${N}\"}\n", "c.yaml:3:24", `expected an integer, got a string the value of "${N}"`},
	}
	e := env{"SLOT": "Not-A-Slot", "N": "many"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := parseErrors(t, c.src, e)
			if os.Getenv("SHOW") != "" {
				t.Log("\n" + (&Errors{List: errs}).Error())
			}
			if !hasError(errs, c.pos, c.frag) {
				t.Fatalf("unexpected errors; got\n%v\nwant one at %s containing %q", (&Errors{List: errs}).Error(), c.pos, c.frag)
			}
		})
	}
}
