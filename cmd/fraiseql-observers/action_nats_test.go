package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

func TestBuildNATS(t *testing.T) {
	env := map[string]string{"NATS_TOKEN": "s3cret-token", "NATS_USER": "obs", "NATS_PASS": "s3cret-pass"}
	body := "      - type: nats\n        url: nats://127.0.0.1:1\n        subject: 'cdc.{{ event.table }}'\n"
	// Only validate: the connection is made when the sink is built.
	if _, err := buildActionYAML(t, body+"        token_env: NATS_TOKEN\n        timeout: 2s\n", env, true); err != nil {
		t.Fatal(err)
	}
	checkBuild(t, "      - type: nats\n        url: nats://h:4222\n", nil, "subject: is required")
	checkBuild(t, body+"        subject: x\n", nil, `duplicate`)
	checkBuild(t, "      - type: nats\n        url: nats://h:4222\n        subject: cdc.>\n", nil, "test.yaml:9:18: action o.0: subject: subject has a wildcard")
	checkBuild(t, body+"        token_env: NATS_TOKEN\n        user_env: NATS_USER\n        password_env: NATS_PASS\n", env, "one way to authenticate")
	checkBuild(t, body+"        user_env: NATS_USER\n", env, "go together")
	checkBuild(t, body+"        creds_file: /nonexistent/x.creds\n", nil, "creds_file: stat /nonexistent/x.creds")
	checkBuild(t, body+"        stream: a.b\n", nil, "stream: a stream name")
	checkBuild(t, body+"        token_env: UNSET_VAR\n", nil, "UNSET_VAR")

	// Built for real: against nats-server, with the stream checked.
	port := sinktest.FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\nauthorization { token: s3cret-token }\n", port, dir)), 0o600)
	sinktest.StartProcess(t, fmt.Sprintf("127.0.0.1:%d", port), "nats-server", "-c", conf)
	real := fmt.Sprintf("      - type: nats\n        url: nats://127.0.0.1:%d\n        subject: 'cdc.{{ event.table }}'\n        token_env: NATS_TOKEN\n", port)
	if _, err := buildActionYAML(t, real, env, false); err != nil {
		t.Fatal(err)
	}
	if _, err := buildActionYAML(t, real+"        stream: CDC\n", env, false); err == nil ||
		!strings.Contains(err.Error(), `test.yaml:11:17: action o.0: stream: stream "CDC" does not exist`) {
		t.Fatalf("unexpected error for a missing stream; got %v", err)
	}
}
