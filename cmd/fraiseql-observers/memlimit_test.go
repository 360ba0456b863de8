package main

import (
	"runtime/debug"
	"testing"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/service"
)

// TestMemoryLimit: the soft memory limit follows the budgets, and a process that
// runs the nats transport's actions counts the in-flight budget twice more for the
// JetStream messages it holds besides the decoded events.
func TestMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const obs = "source:\n  dsn: postgres://app@db/app\nobservers:\n  o:\n    entity: public.orders\n    event_type: INSERT\n    actions:\n      - type: log\n"
	const nats = "transport:\n  type: nats\n  url: nats://127.0.0.1:4222\n"
	for _, c := range []struct {
		yaml, role string
		want       int64
	}{
		{obs, "", 48 << 20},
		{obs + nats, service.RoleReader, 48 << 20},
		{obs + nats, service.RoleExecutor, 80 << 20},
		{obs + nats, "", 80 << 20},
		{obs + nats + "pipeline:\n  max_in_flight_bytes: 32MiB\n", service.RoleExecutor, 144 << 20},
	} {
		cfg, _, err := configs.Parse("c.yaml", []byte(c.yaml), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		if got := memoryLimit(cfg, c.role); got != c.want || debug.SetMemoryLimit(-1) != c.want {
			t.Fatalf("unexpected limit for role %q of\n%s\ngot %d MiB; want %d MiB", c.role, c.yaml, got>>20, c.want>>20)
		}
	}
}
