package sinktest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// StartJetStream starts nats-server with JetStream on a free loopback port, its
// store in a temporary directory that survives a Restart; extra is appended to the
// server's configuration file. It returns the process and the nats:// URL.
func StartJetStream(t testing.TB, extra string) (*Process, string) {
	t.Helper()
	port := FreePort(t)
	dir := t.TempDir()
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\n%s\n", port, filepath.Join(dir, "js"), extra)
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return StartProcess(t, addr, "nats-server", "-c", path), "nats://" + addr
}
