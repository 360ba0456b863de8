package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// TestSourceTLS is reliability test S1: PostgreSQL with ssl = on and a certificate
// from a test CA. With sslmode=verify-full and that CA, every connection of the
// service — queries and the replication stream — is encrypted (PostgreSQL logs each
// as "SSL enabled"); with another CA the service refuses to start, naming the
// certificate problem, and never falls back to plaintext.
func TestSourceTLS(t *testing.T) {
	certs := sinktest.NewCerts(t)
	// PostgreSQL reads its key only when the server's OS user owns it with mode 0600.
	dir, err := os.MkdirTemp("/tmp", "pgtls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, f := range []string{certs.CertFile, certs.KeyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			u, err := user.Lookup("postgres")
			if err != nil {
				t.Fatal(err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(dst, uid, gid); err != nil {
				t.Fatal(err)
			}
			os.Chown(dir, uid, gid)
		}
	}
	srv, err := pgtest.Start(pgtest.Options{Settings: map[string]string{
		"ssl":             "on",
		"ssl_cert_file":   fmt.Sprintf("'%s'", filepath.Join(dir, filepath.Base(certs.CertFile))),
		"ssl_key_file":    fmt.Sprintf("'%s'", filepath.Join(dir, filepath.Base(certs.KeyFile))),
		"log_connections": "on",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Remove() })
	db := pgtest.NewDBOn(t, srv)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	dsn := func(ca string) string {
		return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=verify-full&sslrootcert=%s&application_name=tls-test-svc", srv.Port, db.Name, ca)
	}
	config := func(ca, out string) string {
		return fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
admin: {listen: ""}
observers:
  all:
    entity: t
    actions: [{type: file, path: %q}]
`, dsn(ca), out)
	}

	t.Run("verified", func(t *testing.T) {
		logStart := len(srv.Log())
		out := filepath.Join(t.TempDir(), "events.jsonl")
		p := startService(t, nil, "start", "--config", writeConfig(t, config(certs.CAFile, out)))
		waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
		db.Exec(`INSERT INTO t VALUES (1)`)
		waitFor(t, 30*time.Second, "the event", func() bool { return len(readEvents(t, out)) == 1 })
		if code := p.stop(); code != 0 {
			t.Fatalf("unexpected exit code %d", code)
		}
		var conns, repl int
		for _, line := range strings.Split(srv.Log()[logStart:], "\n") {
			if !strings.Contains(line, "authorized") || !strings.Contains(line, "application_name=tls-test-svc") {
				continue
			}
			if !strings.Contains(line, "SSL enabled") {
				t.Fatalf("the service connected without TLS:\n%s", line)
			}
			conns++
			if strings.Contains(line, "replication connection authorized") {
				repl++
			}
		}
		t.Logf("%d connections of the service, %d replication, all with TLS", conns, repl)
		if conns == 0 || repl == 0 {
			t.Fatalf("unexpected connections of the service in the server log; got %d, %d of them replication; want both > 0\n%s", conns, repl, srv.Log()[logStart:])
		}
		if strings.Contains(p.output(), "use sslmode=verify-full") {
			t.Fatalf("unexpected TLS warning for a verified connection:\n%s", p.output())
		}
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		logStart := len(srv.Log())
		other := sinktest.NewCerts(t)
		cfg := writeConfig(t, config(other.CAFile, filepath.Join(t.TempDir(), "events.jsonl")))
		expectExit(t, exitPrefight, `cannot connect to the source database.*certificate signed by unknown authority`, "start", "--config", cfg)
		if strings.Contains(srv.Log()[logStart:], "application_name=tls-test-svc") {
			t.Fatalf("the service got a connection with an untrusted certificate:\n%s", srv.Log()[logStart:])
		}
	})
}
