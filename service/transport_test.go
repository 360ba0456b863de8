package service

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/transport"
)

const transportObs = "source:\n  dsn: postgres://app@db/app\nobservers:\n  o:\n    entity: public.orders\n    actions:\n      - type: log\n"

// TestTransportConfigPositions: every mistake in the transport section is reported
// at its file:line:column, as every other key is.
func TestTransportConfigPositions(t *testing.T) {
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:4222"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	f := func(section, want string) {
		t.Helper()
		cfg, _, err := configs.Parse("c.yaml", []byte(transportObs+section), lookup)
		if err == nil {
			_, err = TransportConfig(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error for\n%s\ngot %v; want it to contain %q", section, err, want)
		}
	}
	// Lines 1–7 are transportObs; the section starts on line 8.
	f("transport:\n  type: kafka\n", `c.yaml:9:9: transport.type: unknown transport "kafka"`)
	f("transport:\n  type: nats\n", "c.yaml:8:1: transport.url: url or url_env is required")
	f("transport:\n  type: nats\n  url_env: NATS_URL\n  partitions: 5000\n", "c.yaml:11:15: transport.partitions: must be between 1 and 1024, got 5000")
	f("transport:\n  type: nats\n  url: http://x\n", "c.yaml:10:8: transport.url: ")
	f("transport:\n  type: nats\n  url_env: NATS_URL\n  lease_ttl: 10ms\n", "c.yaml:11:14: transport.lease_ttl: must be at least 1s")
	f("transport:\n  type: nats\n  url_env: NATS_URL\n  strem: x\n", `c.yaml:11:3: transport: unknown key "strem" (did you mean "stream"?)`)
	f("transport:\n  stream: x\n", "c.yaml:9:11: transport.stream: a key of the nats transport, which needs type: nats")
	f("transport:\n  type: in_process\n  lease_ttl: 5s\n", "c.yaml:10:14: transport.lease_ttl: a key of the nats transport, which needs type: nats")
	f("transport:\n  type: nats\n  url_env: UNSET_VAR\n", "c.yaml:10:12: transport.url_env: environment variable UNSET_VAR is not set")

	cfg, _, err := configs.Parse("c.yaml", []byte(transportObs+"transport:\n  type: nats\n  url_env: NATS_URL\n  partitions: 4\n  lease_ttl: 3s\n"), lookup)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := TransportConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tc.Type != transport.TypeNATS || tc.URL.Value() != env["NATS_URL"] || tc.Partitions != 4 || tc.LeaseTTL != 3*time.Second ||
		tc.Stream != transport.DefaultStream || tc.SubjectPrefix != transport.DefaultSubjectPrefix || tc.Replicas != 1 {
		t.Fatalf("unexpected transport config %+v", tc)
	}
	cfg, _, err = configs.Parse("c.yaml", []byte(transportObs), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if tc, err = TransportConfig(cfg); err != nil || tc.Type != transport.TypeInProcess {
		t.Fatalf("unexpected default transport %+v, %v; want in_process", tc, err)
	}
	if _, err := checkRole(RoleReader, tc, cfg); err == nil || !strings.Contains(err.Error(), "--role reader needs transport.type: nats") {
		t.Fatalf("unexpected error for --role reader with in_process: %v", err)
	}
	if _, err := checkRole("bridge", tc, cfg); err == nil || !strings.Contains(err.Error(), "--role must be reader, executor or all") {
		t.Fatalf("unexpected error for --role bridge: %v", err)
	}
}

// validate-config --detailed does not say "connected" when NATS cannot be reached:
// the client keeps retrying in the background, so connecting alone proves nothing.
func TestTransportChecksNATSUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg, _, err := configs.Parse("c.yaml", []byte(transportObs+"transport:\n  type: nats\n  url: nats://"+addr+"\n  dial_timeout: 1s\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := TransportChecks(context.Background(), cfg)
	if len(checks) != 1 || checks[0].Name != "transport_connect" || checks[0].Status != CheckFail ||
		!strings.Contains(checks[0].Message, "cannot reach NATS (transport.url) within 1s") {
		t.Fatalf("unexpected checks with NATS unreachable: %+v", checks)
	}
}
