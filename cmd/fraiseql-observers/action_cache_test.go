package main

import (
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// buildActionYAML loads a configuration with one observer whose only action is body
// (YAML at the indentation of an action's keys, after "- type: ...") and builds it.
func buildActionYAML(t *testing.T, body string, env map[string]string, validateOnly bool) (pipeline.Sink, error) {
	t.Helper()
	return buildSource(t, "test.yaml", "source:\n  dsn: postgres://app@db/app\nobservers:\n  o:\n    entity: orders\n    actions:\n"+body, env, validateOnly)
}

// checkBuild builds body in both modes and checks the error: none when want is
// empty, else one containing want (a "line:column: ..." prefix included).
func checkBuild(t *testing.T, body string, env map[string]string, want string) {
	t.Helper()
	for _, validateOnly := range []bool{true, false} {
		sink, err := buildActionYAML(t, body, env, validateOnly)
		if want == "" {
			if err != nil {
				t.Fatalf("unexpected error (validateOnly=%v); got %v", validateOnly, err)
			}
			if (sink == nil) != validateOnly {
				t.Fatalf("unexpected sink (validateOnly=%v); got %v", validateOnly, sink)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error (validateOnly=%v); got %v; want ...%s...", validateOnly, err, want)
		}
		for _, v := range env {
			if strings.Contains(err.Error(), v) {
				t.Fatalf("error shows an environment value: %v", err)
			}
		}
	}
}

func TestBuildCache(t *testing.T) {
	env := map[string]string{"REDIS_URL": "redis://:s3cret@127.0.0.1:1/0"}
	checkBuild(t, "      - type: cache\n        url: redis://127.0.0.1:1\n        key_pattern: 'order:{{ new.id }}'\n", nil, "")
	checkBuild(t, "      - type: cache\n        url_env: REDIS_URL\n        key_pattern: 'order:{{ new.id }}:*'\n        action: invalidate\n"+
		"        timeout: 1s\n        dial_timeout: 2s\n        pool_size: 4\n        scan_timeout: 10s\n", env, "")
	checkBuild(t, "      - type: cache\n        url: redis://h\n        key_pattern: k\n        action: refresh\n", nil,
		"test.yaml:10:17: action o.0: action: refresh is not supported")
	checkBuild(t, "      - type: cache\n        url: redis://h\n", nil, "test.yaml:7:9: action o.0: key_pattern: is required")
	checkBuild(t, "      - type: cache\n        key_pattern: k\n", nil, "url or url_env is required")
	checkBuild(t, "      - type: cache\n        url: redis://h\n        url_env: REDIS_URL\n        key_pattern: k\n", env, "mutually exclusive")
	checkBuild(t, "      - type: cache\n        url: redis://h\n        key_pattern: 'k:{{ new.id + }}'\n", nil, "test.yaml:9:")
	checkBuild(t, "      - type: cache\n        url: redis://h\n        key_pattern: k\n        ttl: 1s\n", nil, `unknown key "ttl"`)
	checkBuild(t, "      - type: cache\n        url_env: REDIS_URL\n        key_pattern: k\n", map[string]string{"REDIS_URL": "http://u:s3cret@h"},
		"test.yaml:8:18: action o.0: url_env: scheme must be redis or rediss")
}
