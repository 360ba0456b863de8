package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// binPath is the service binary built once for the test binary; tests run it as a
// subprocess, so crashes are real process deaths.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fobin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "fraiseql-observers")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=test-build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build service binary:", err)
		os.Exit(1)
	}
	pgtest.Main(m, pgtest.Options{})
	os.RemoveAll(dir)
}

// proc is a running service process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *sinktest.LockedBuffer
	done chan struct{}
	err  error
}

// startService runs the binary with args; its output is kept for failure reports.
func startService(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, log: &sinktest.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("service output:\n%s", p.output())
		}
	})
	return p
}

func (p *proc) output() string { return p.log.String() }

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop() int {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.t.Fatalf("service did not stop within 60s after SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

// wait waits for the process to exit by itself and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		p.t.Fatalf("service still running after %v", d)
	}
	return -1
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// writeConfig writes a YAML configuration into the test's temp dir.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fileEvent is the part of a delivered event the tests look at.
type fileEvent struct {
	ID        string                     `json:"id"`
	CommitLSN string                     `json:"commit_lsn"`
	Table     string                     `json:"table"`
	Op        string                     `json:"op"`
	Key       map[string]json.RawMessage `json:"key"`
	New       map[string]json.RawMessage `json:"new"`
	Old       map[string]json.RawMessage `json:"old"`
	OldKind   string                     `json:"old_kind"`
	raw       string
}

// readEvents parses the JSON lines of a file sink; a missing file is empty. A last
// line without its newline is being written by the running service and is left out.
func readEvents(t *testing.T, path string) []fileEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var out []fileEvent
	for line := range bytes.Lines(data) {
		var ev fileEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("file %s holds a line that is not JSON: %v\n%s", path, err, line)
		}
		ev.raw = string(bytes.TrimSuffix(line, []byte("\n")))
		out = append(out, ev)
	}
	return out
}

// eventIDsByRow reads the events of a file sink whose rows have an integer id
// column and returns the event id of each row. A row delivered under two different
// event ids fails the test: duplicates must carry the same id.
func eventIDsByRow(t *testing.T, path string) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, ev := range readEvents(t, path) {
		var id int
		if err := json.Unmarshal(ev.New["id"], &id); err != nil {
			t.Fatalf("event without a numeric id: %s", ev.raw)
		}
		if prev, seen := out[id]; seen && prev != ev.ID {
			t.Fatalf("row %d delivered with two event ids: %s and %s", id, prev, ev.ID)
		}
		out[id] = ev.ID
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

// slotActive reports whether the slot is being streamed: held by a walsender that
// has started replication. A slot is also active, briefly, while the connection
// that created it holds it; that walsender is still in state "startup".
func slotActive(db *pgtest.DB, slot string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := db.Server.Connect(ctx, db.Name)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var active bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
		WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming'))`, slot).Scan(&active); err != nil {
		return false
	}
	return active
}

// baseConfig returns a configuration for db, without an admin endpoint, with a file
// action writing to out.
func baseConfig(db *pgtest.DB, out string, extra string) string {
	return opsConfig(db, "", "", extra, fmt.Sprintf(`  everything:
    entity: "*"
    event_type: [INSERT, UPDATE, DELETE, TRUNCATE]
    actions:
      - type: file
        name: out
        path: %q
`, out))
}
