package rabbitmq

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// rabbitmqServer is the Debian package's server script. /usr/sbin/rabbitmq-server
// is a wrapper that switches to the rabbitmq user and the system node's directories;
// this one runs as the caller with the environment given.
const rabbitmqServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// node is a private RabbitMQ node started for one test: its own node name, AMQP and
// distribution ports on loopback, data, logs, configuration and Erlang cookie in a
// temporary directory. It shares only the machine's epmd.
type node struct {
	*sinktest.Process
	Port int
	URL  string // amqp://guest:guest@127.0.0.1:PORT/
	Dir  string
}

// nodeOptions configures startNode.
type nodeOptions struct {
	MaxMessageSize int    // max_message_size in bytes (default 65536)
	Extra          string // more rabbitmq.conf lines
}

// startNode starts a private node and waits until its AMQP port accepts
// connections. A missing rabbitmq-server skips the test, or fails it when CI=true.
func startNode(t testing.TB, o nodeOptions) *node {
	t.Helper()
	if _, err := os.Stat(rabbitmqServer); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("rabbitmq-server not installed (CI=true): %v", err)
		}
		t.Skipf("rabbitmq-server not installed: %v", err)
	}
	if _, err := exec.LookPath("env"); err != nil {
		t.Fatal(err)
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 65536
	}
	dir := t.TempDir()
	port := sinktest.FreePort(t)
	dist := sinktest.FreePort(t)
	for dist == port {
		dist = sinktest.FreePort(t)
	}
	conf := fmt.Sprintf(`listeners.tcp.default = 127.0.0.1:%d
max_message_size = %d
log.file.level = warning
log.console = false
%s
`, port, o.MaxMessageSize, o.Extra)
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"enabled_plugins":   "[].\n", // no management plugin
		"rabbitmq-env.conf": "",      // not the system node's NODENAME
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{
		"HOME=" + dir, // a private .erlang.cookie
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_NODENAME=fotest" + strconv.Itoa(port) + "@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(dist),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(dir, "plugins-expand"),
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbit.pid"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
	}
	start := time.Now()
	// StartProcess starts at once, so the environment goes through env(1).
	p := sinktest.StartProcess(t, "127.0.0.1:"+strconv.Itoa(port), "env", append(env, rabbitmqServer)...)
	t.Logf("private rabbitmq node on 127.0.0.1:%d up in %v", port, time.Since(start).Round(10*time.Millisecond))
	return &node{Process: p, Port: port, URL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port), Dir: dir}
}
