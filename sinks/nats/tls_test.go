package nats

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// TestTLS: a tls:// URL verifies the server's certificate: with the test CA as
// ca_file the sink publishes; with the system roots it cannot connect.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certs := sinktest.NewCerts(t)
	port := sinktest.FreePort(t)
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ntls { cert_file: %q, key_file: %q }\n",
		port, filepath.Join(dir, "js"), certs.CertFile, certs.KeyFile)
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sinktest.StartProcess(t, fmt.Sprintf("127.0.0.1:%d", port), "nats-server", "-c", path)
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)

	if _, err := New(sinktest.Context(t), Config{URL: configs.NewSecret(url), Subject: "cdc.orders"}, sinks.Deps{}); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unexpected error without the CA; got %v", err)
	}
	s := openSink(t, Config{URL: configs.NewSecret(url), Subject: "cdc.orders", CAFile: certs.CAFile}, nil)
	st := createStream(t, s.js)
	evs := sinktest.Events(10, 10)
	sinktest.NoDLQ(t, sinktest.Run(t, noClose{s}, evs, sinktest.RunOptions{BatchSize: 5}))
	checkStored(t, readAll(t, st), evs, "cdc.orders")
}
