package main

import (
	"testing"

	"github.com/fraiseql/fraiseql-observers/sinks/rabbitmq"
)

func TestRabbitMQAction(t *testing.T) {
	env := map[string]string{"AMQP_URL": "amqp://obs:s3cr3t-pass@mq.internal:5672/cdc"}
	f := func(body, wantErr string) {
		t.Helper()
		checkBuildOf[*rabbitmq.Sink](t, "rabbitmq", body, env, wantErr)
	}
	f("        url_env: AMQP_URL\n        exchange: cdc\n        routing_key: \"{{ event.table }}.{{ event.op }}\"\n", "")
	f(`        url: amqps://obs:s3cr3t-pass@mq.internal/cdc
        exchange: cdc
        routing_key: orders
        mandatory: false
        timeout: 5s
        max_message_bytes: 16MiB
        declare: {kind: topic, durable: true}
        tls: {server_name: mq.internal}
`, "")
	f("        routing_key: q\n", "test.yaml:7:9: action o.0: url: required")
	f("        url: http://obs:s3cr3t-pass@h/\n        routing_key: q\n", "test.yaml:8:14: action o.0: url: scheme must be amqp or amqps")
	f("        url_env: AMQP_URL\n        url: amqp://h/\n        routing_key: q\n", "test.yaml:8:18: action o.0: url_env: url and url_env are mutually exclusive")
	f("        url_env: AMQP_URL\n", "test.yaml:7:9: action o.0: routing_key: required with the default exchange")
	f("        url_env: AMQP_URL\n        routing_key: \"{{ new.id\"\n", "test.yaml:9:22: action o.0: routing_key: unclosed {{")
	f("        url_env: AMQP_URL\n        exchange: \"cdc.{{ event.table }}\"\n        routing_key: k\n        declare: {durable: true}\n",
		"test.yaml:11:18: action o.0: declare: name is required")
	f("        url_env: AMQP_URL\n        exchange: cdc\n        routing_key: k\n        declare: {kind: x-delayed}\n",
		"test.yaml:11:18: action o.0: declare: kind must be direct")
	f("        url_env: AMQP_URL\n        routing_key: k\n        tls: {ca_file: /nonexistent/ca.pem}\n", "tls: needs an amqps:// url")
	f("        url_env: AMQP_URL\n        routing_key: k\n        mandatory: maybe\n", "mandatory")
	f("        url_env: AMQP_URL\n        routing_key: k\n        routingkey: k\n", "routingkey")
}
