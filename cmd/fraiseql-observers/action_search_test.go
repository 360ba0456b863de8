package main

import (
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/pipeline"
)

func TestSearchAction(t *testing.T) {
	env := map[string]string{"ES_URL": "https://search.example.com:9200", "ES_USER": "elastic", "ES_PASS": "pw-canary", "ES_KEY": "a2V5"}
	s := wantBuilt(t, "type: search\nurl_env: ES_URL\nindex: orders-{{ event.table }}\nusername_env: ES_USER\npassword_env: ES_PASS", env)
	if _, ok := s.(pipeline.BatchSink); !ok {
		t.Fatalf("unexpected sink %T: want a BatchSink (batch_size defaults to 100)", s)
	}
	if n := actionBatch(t, "type: search\nurl_env: ES_URL\nindex: orders", env); n != 100 {
		t.Fatalf("unexpected batch of %d: batch_size defaults to 100", n)
	}
	one := "type: search\nurl: http://10.0.0.5:9200\nallowed_hosts: [10.0.0.0/24]\nindex: orders\nid_template: \"{{ new.id }}\"\napi_key_env: ES_KEY\nbatch_size: 1\nevent_id_field: event_id\ntimeout: 2s"
	wantBuilt(t, one, env)
	if n := actionBatch(t, one, env); n != 1 {
		t.Fatalf("unexpected batch of %d for batch_size 1", n)
	}

	wantError(t, "type: search\nindex: orders", env, "type: search", "url: a URL is required")
	wantError(t, "type: search\nurl: https://a.example\nurl_env: ES_URL\nindex: orders", env, "ES_URL", "mutually exclusive")
	wantError(t, "type: search\nurl_env: ES_URL", env, "type: search", "index: an index is required")
	wantError(t, "type: search\nurl_env: ES_URL\nindex: Orders", env, "Orders", "lower case")
	wantError(t, "type: search\nurl_env: ES_URL\nindex: orders-{{ event.table", env, "{{", "unclosed")
	wantError(t, "type: search\nurl_env: ES_URL\nindex: orders\nid_template: x {{ nope_fn() }}", env, "nope_fn", "unknown function")
	wantError(t, "type: search\nurl: http://10.0.0.5:9200\nindex: orders", env, "http://10.0.0.5", "allowed_hosts")
	wantError(t, "type: search\nurl: https://elastic:pw@search.example.com\nindex: orders", env, "https://elastic", "credentials in the URL")
	wantError(t, "type: search\nurl_env: ES_URL\nindex: orders\napi_key_env: ES_KEY\nusername_env: ES_USER\npassword_env: ES_PASS", env, "ES_KEY", "either api_key_env")
	wantError(t, "type: search\nurl_env: ES_URL\nindex: orders\nusername_env: ES_USER", env, "ES_USER", "go together")
	wantError(t, "type: search\nurl_env: ES_URL\nindex: orders\npassword_env: UNSET", env, "UNSET", "UNSET is not set")
	wantError(t, "type: search\nurl_env: ES_URL\nindex: orders\nbatch_size: -1", env, "-1", "between 1 and")

	_, err := buildAction(t, "type: search\nurl_env: ES_URL\nindex: orders\nusername_env: ES_PASS", env, true)
	if err == nil || strings.Contains(err.Error(), "pw-canary") {
		t.Fatalf("unexpected error: %v", err)
	}
}
