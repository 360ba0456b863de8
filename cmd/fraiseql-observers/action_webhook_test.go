package main

import (
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks/webhook"
)

func TestWebhookAction(t *testing.T) {
	env := map[string]string{
		"HOOK_URL":    "https://hooks.example.com/orders",
		"HOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"OLD_SECRET":  "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
		"SHORT":       "whsec_c2hvcnQ=",
		"EMPTY":       "",
	}
	// Good configurations build, for validate-config and for real.
	wantBuilt(t, "type: webhook\nurl: https://hooks.example.com/x", env)
	if n := actionBatch(t, "type: webhook\nurl: https://hooks.example.com/x", env); n != 1 {
		t.Fatalf("unexpected batch of %d for batch_size 1: the pipeline would serialize its requests", n)
	}
	if n := actionBatch(t, "type: webhook\nurl: https://hooks.example.com/x\nbatch_size: 50", env); n != 50 {
		t.Fatalf("unexpected batch of %d for batch_size 50", n)
	}
	if n := actionBatch(t, "type: webhook\nurl: https://hooks.example.com/x\nbatch_size: 500", env); n != 100 {
		t.Fatalf("unexpected batch of %d for batch_size 500: want pipeline.batch_size, 100", n)
	}
	s := wantBuilt(t, "type: webhook\nurl: https://hooks.example.com/x\nbatch_size: 2", env)
	if _, ok := s.(pipeline.BatchSink); !ok {
		t.Fatalf("unexpected sink %T: want a BatchSink", s)
	}
	s = wantBuilt(t, `type: webhook
name: fulfilment
url_env: HOOK_URL
method: put
headers:
  X-Source: fraiseql-observers
  Authorization: Bearer abc
body_template: '{"id": {{ new.id }}, "entity": "{{ entity }}"}'
timeout: 5s
signing_secret_env: HOOK_SECRET
signature_format: standard
batch_size: 50
follow_redirects: true`, env)
	if _, ok := s.(*webhook.Sink); !ok {
		t.Fatalf("unexpected sink type %T for batch_size 50", s)
	}
	wantBuilt(t, "type: webhook\nurl: http://10.1.2.3:8080/hook\nallowed_hosts: [10.1.0.0/16, hooks.internal]", env)
	wantBuilt(t, "type: webhook\nurl: http://127.0.0.1:8080/hook\nallow_private_networks: true", env)
	wantBuilt(t, "type: webhook\nurl: https://hooks.example.com/x\nsignature_format: standard\nsigning_secrets_env: [HOOK_SECRET, OLD_SECRET]", env)
	wantBuilt(t, "type: webhook\nurl: https://hooks.example.com/x\nsigning_secret: plain-text-is-fine-for-fraiseql\nheaders: ~", env)

	// Bad ones fail at the key's position, naming the action.
	wantError(t, "type: webhook\nmethod: POST", env, "type: webhook", "action orders.0: url: a URL is required")
	wantError(t, "type: webhook\nurl: https://a.example/\nurl_env: HOOK_URL", env, "HOOK_URL", "url and url_env are mutually exclusive")
	wantError(t, "type: webhook\nurl_env: NOT_SET", env, "NOT_SET", "NOT_SET")
	wantError(t, "type: webhook\nurl_env: EMPTY", env, "EMPTY", "EMPTY")
	wantError(t, "type: webhook\nurl: file:///etc/passwd", env, "file:///etc/passwd", "only http and https")
	wantError(t, "type: webhook\nurl: unix:///run/docker.sock", env, "unix:///run", "only http and https")
	wantError(t, "type: webhook\nurl: http://169.254.169.254/latest", env, "http://169.254", "169.254.169.254 is a link-local address")
	wantError(t, "type: webhook\nurl: http://127.0.0.1:9/", env, "http://127.0.0.1", "allowed_hosts")
	wantError(t, "type: webhook\nurl: http://[::ffff:127.0.0.1]/", env, "http://[::ffff", "loopback")
	wantError(t, "type: webhook\nurl: http://0x7f000001/", env, "http://0x7f", "legacy numeric")
	wantError(t, "type: webhook\nurl: http://10.1.2.3/\nallowed_hosts: [10.9.0.0/16]", env, "http://10.1.2.3/", "private")
	wantError(t, "type: webhook\nurl: https://a.example/\nallowed_hosts: [10.0.0.0/40]", env, "[10.0.0.0/40]", "invalid CIDR")
	wantError(t, "type: webhook\nurl: https://a.example/\nmethod: GETT", env, "GETT", "not a method that sends a body")
	wantError(t, "type: webhook\nurl: https://a.example/\nmethod: GET", env, "GET", "not a method that sends a body")
	wantError(t, "type: webhook\nurl: https://a.example/\nmethod: \"PO ST\"", env, "\"PO ST\"", "not an HTTP method")
	wantError(t, "type: webhook\nurl: https://a.example/\nheaders:\n  X-Evil: \"a\\r\\nX-Injected: 1\"", env, "X-Evil", "control character 0x0d")
	wantError(t, "type: webhook\nurl: https://a.example/\nheaders:\n  X-Evil: \"a\\nb\"", env, "X-Evil", "control character 0x0a")
	wantError(t, "type: webhook\nurl: https://a.example/\nheaders:\n  X-Evil: \"a\\0b\"", env, "X-Evil", "control character 0x00")
	wantError(t, "type: webhook\nurl: https://a.example/\nheaders:\n  \"X-Bad:Name\": v", env, "\"X-Bad", "not a valid token")
	wantError(t, "type: webhook\nurl: https://a.example/\nheaders:\n  \"X-Bad\\r\\nName\": v", env, "\"X-Bad", "not a valid token")
	wantError(t, "type: webhook\nurl: https://a.example/\nheaders:\n  Idempotency-Key: mine", env, "Idempotency-Key", "set by the webhook action")
	// Template errors point into the template (plain scalars; a quoted one is off by
	// its quote, as for conditions).
	wantError(t, "type: webhook\nurl: https://a.example/\nbody_template: id {{ unknown_fn(1) }}", env, "unknown_fn", "body_template: unknown function unknown_fn")
	wantError(t, "type: webhook\nurl: https://a.example/\nbody_template: id {{ new.id", env, "{{", "body_template: unclosed {{")
	wantError(t, "type: webhook\nurl: https://a.example/\nbody_template: id {{ new.id + }}", env, " }}", "body_template: unexpected token EOF")
	wantError(t, "type: webhook\nurl: https://a.example/\nsigning_secret: s\nsignature_format: hmac", env, "hmac", "must be fraiseql or standard")
	wantError(t, "type: webhook\nurl: https://a.example/\nsignature_format: standard", env, "standard", "no signing secret")
	wantError(t, "type: webhook\nurl: https://a.example/\nsigning_secret_env: SHORT\nsignature_format: standard", env, "SHORT", "at least 24")
	wantError(t, "type: webhook\nurl: https://a.example/\nsigning_secret: abc\nsigning_secret_env: HOOK_SECRET", env, "HOOK_SECRET", "mutually exclusive")
	wantError(t, "type: webhook\nurl: https://a.example/\nsigning_secrets_env: [HOOK_SECRET, SHORT]\nsignature_format: standard", env, "[HOOK_SECRET", "at least 24")
	wantError(t, "type: webhook\nurl: https://a.example/\ntimeout: -1s", env, "-1s", "negative")
	wantError(t, "type: webhook\nurl: https://a.example/\ntimeout: 30", env, "30", "")
	wantError(t, "type: webhook\nurl: https://a.example/\nbatch_size: 0\nbatch_size_typo: 3", env, "batch_size_typo", "batch_size_typo")
	wantError(t, "type: webhook\nurl: https://a.example/\nbatch_size: 20000", env, "20000", "between 1 and")

	// Secrets never appear in errors.
	_, err := buildAction(t, "type: webhook\nurl: https://a.example/\nsigning_secret_env: SHORT\nsignature_format: standard", env, true)
	if err == nil || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Fatalf("unexpected error: %v", err)
	}
}

// TestHTTPActionsRegistered: the observers of a configuration with every action of
// this file build through the registry.
func TestHTTPActionsRegistered(t *testing.T) {
	for _, typ := range []string{"webhook", "slack", "search", "log"} {
		if _, ok := actionTypes[typ]; !ok {
			t.Fatalf("unexpected: action type %q not registered", typ)
		}
	}
}
