package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// TestAdminTLS: with admin.tls_cert_file and tls_key_file the endpoint serves HTTPS,
// and the CLI, reading the same configuration, talks HTTPS to it and verifies the
// certificate with admin.tls_ca_file. Without that CA the CLI cannot verify the
// certificate and says so, instead of showing the service's state.
func TestAdminTLS(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	certs := sinktest.NewCerts(t)
	addr := freeAddr(t)
	config := func(ca string) string {
		return fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s}
admin: {listen: %q, tls_cert_file: %q, tls_key_file: %q%s}
observers:
  all:
    entity: t
    actions: [{type: stdout}]
`, db.DSN(), addr, certs.CertFile, certs.KeyFile, ca)
	}
	cfg := writeConfig(t, config(fmt.Sprintf(", tls_ca_file: %q", certs.CAFile)))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "status over HTTPS", func() bool {
		if p.exited() {
			t.Fatalf("the service exited:\n%s", p.output())
		}
		r := cli(t, nil, "status", "--config", cfg)
		return r.code == 0 && strings.Contains(r.stdout, "from the running service at https://"+addr) && strings.Contains(r.stdout, "Leader: listener-1 (1/1 healthy)")
	})
	expectCLI(t, nil, 0, []string{"observer_listener_health"}, "metrics", "--config", cfg, "--metric", "observer_listener_health")

	untrusting := writeConfig(t, config(""))
	r := cli(t, nil, "metrics", "--config", untrusting)
	if r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("unexpected result without the CA; exit code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// status must not mistake the untrusted endpoint for a stopped service.
	r = cli(t, nil, "status", "--config", untrusting)
	if r.code != exitConfig || strings.Contains(r.stdout, "not running") || !strings.Contains(r.stderr, "answered, but its certificate cannot be verified") {
		t.Fatalf("unexpected status without the CA; exit code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
}
