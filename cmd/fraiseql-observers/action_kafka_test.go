package main

import (
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/sinks/kafka"
)

// buildOne parses a configuration with one observer whose single action has
// the given type and body (keys indented by 8 spaces) and runs its builder.
func buildOne(t *testing.T, typ, body string, env map[string]string, validateOnly bool) (any, error) {
	t.Helper()
	return buildSource(t, "test.yaml", "source:\n  dsn: postgres://app@db/app\nobservers:\n  o:\n    entity: public.orders\n    actions:\n      - type: "+typ+"\n"+body, env, validateOnly)
}

// checkBuildOf builds an action of type typ from body in both modes and checks the
// outcome: with wantErr empty, a sink of type S outside validate-config only;
// otherwise an error containing wantErr that does not show the password s3cr3t.
func checkBuildOf[S any](t *testing.T, typ, body string, env map[string]string, wantErr string) {
	t.Helper()
	for _, validateOnly := range []bool{true, false} {
		sink, err := buildOne(t, typ, body, env, validateOnly)
		if wantErr == "" {
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			if _, ok := sink.(S); ok == validateOnly {
				t.Fatalf("unexpected sink %T (validateOnly=%v)", sink, validateOnly)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("unexpected error; got\n%v\nwant one containing %q", err, wantErr)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("error shows the password: %v", err)
		}
	}
}

func TestKafkaAction(t *testing.T) {
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092, 127.0.0.1:9093", "KAFKA_USER": "obs", "KAFKA_PASS": "s3cr3t-pass"}
	f := func(body, wantErr string) {
		t.Helper()
		checkBuildOf[*kafka.Sink](t, "kafka", body, env, wantErr)
	}
	f("        brokers: [127.0.0.1:9092]\n        topic: cdc.{{ event.schema }}.{{ event.table }}\n", "")
	f(`        brokers_env: KAFKA_BROKERS
        topic: orders
        timeout: 5s
        acks: leader
        compression: zstd
        max_message_bytes: 512KiB
        sasl_mechanism: scram-sha-512
        username_env: KAFKA_USER
        password_env: KAFKA_PASS
        tls: {server_name: kafka.internal}
`, "")
	f("        topic: t\n", "test.yaml:7:9: action o.0: brokers: at least one broker is required")
	f("        brokers: [127.0.0.1:9092]\n", "test.yaml:7:9: action o.0: topic: required")
	f("        brokers: [127.0.0.1:9092]\n        topic: \"bad topic\"\n", "test.yaml:9:16: action o.0: topic: topic name has a character")
	f("        brokers: [127.0.0.1:9092]\n        topic: \"{{ new.id \"\n", "test.yaml:9:16: action o.0: topic: unclosed {{")
	f("        brokers: [nohost]\n        topic: t\n", "test.yaml:8:18: action o.0: brokers: \"nohost\" is not host:port")
	f("        brokers: [127.0.0.1:9092]\n        brokers_env: KAFKA_BROKERS\n        topic: t\n", "test.yaml:9:22: action o.0: brokers_env: brokers and brokers_env are mutually exclusive")
	f("        brokers: [127.0.0.1:9092]\n        topic: t\n        acks: none\n", "test.yaml:10:15: action o.0: acks: must be all or leader")
	f("        brokers: [127.0.0.1:9092]\n        topic: t\n        compression: brotli\n", "test.yaml:10:22: action o.0: compression: must be none")
	f("        brokers: [127.0.0.1:9092]\n        topic: t\n        sasl_mechanism: PLAIN\n        username: u\n", "test.yaml:10:25: action o.0: sasl_mechanism: PLAIN needs a username and a password")
	f("        brokers: [127.0.0.1:9092]\n        topic: t\n        password_env: KAFKA_PASS\n", "test.yaml:7:9: action o.0: sasl_mechanism: required with username and password")
	f("        brokers: [127.0.0.1:9092]\n        topic: t\n        tls: {ca_file: /nonexistent/ca.pem}\n", "test.yaml:10:14: action o.0: tls: read ca_file")
	f("        brokers: [127.0.0.1:9092]\n        topic: t\n        topik: t\n", "topik")
	f("        brokers: [127.0.0.1:9092]\n        topic: t\n        password_env: MISSING_VAR\n", "MISSING_VAR")
}
