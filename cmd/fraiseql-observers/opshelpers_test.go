package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/promtext"
)

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cliResult is the outcome of one command run as a subprocess.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs the binary with args (a CLI command) and returns its output and exit code.
func cli(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return cliOutcome(t, args, err, out.String(), errb.String())
}

// cliOutcome is the result of a finished command: its output and exit code; a
// command that could not be run fails the test.
func cliOutcome(t *testing.T, args []string, err error, stdout, stderr string) cliResult {
	t.Helper()
	r := cliResult{stdout: stdout, stderr: stderr}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// expectCLI runs a command and checks its exit code and that stdout contains every
// string in want.
func expectCLI(t *testing.T, env []string, code int, want []string, args ...string) cliResult {
	t.Helper()
	r := cli(t, env, args...)
	if r.code != code {
		t.Fatalf("%v: unexpected exit code; got %d; want %d\nstdout:\n%s\nstderr:\n%s", args, r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("%v: output lacks %q\nstdout:\n%s\nstderr:\n%s", args, w, r.stdout, r.stderr)
		}
	}
	return r
}

// cliJSON runs a command with --format json, expects exit code 0 and decodes stdout.
func cliJSON(t *testing.T, env []string, out any, args ...string) {
	t.Helper()
	r := expectCLI(t, env, 0, nil, append(args, "--format", "json")...)
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		t.Fatalf("%v: output is not the expected JSON: %v\n%s", args, err, r.stdout)
	}
}

// scrape fetches /metrics and returns every series with its value.
func scrape(t *testing.T, addr, token string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape /metrics: HTTP %d: %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, s := range promtext.Parse(string(body)) {
		out[s.Series] = s.Value
	}
	return out
}

// metric returns one series of a scrape, failing when it is absent.
func metric(t *testing.T, m map[string]float64, series string) float64 {
	t.Helper()
	v, ok := m[series]
	if !ok {
		t.Fatalf("metric %s is missing from /metrics", series)
	}
	return v
}

// httpStatus returns the status code of GET addr+path.
func httpStatus(addr, path string) int {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// opsConfig is a configuration with an admin endpoint at addr (with a token from the
// variable tokenEnv unless it is "") and the given observers.
func opsConfig(db *pgtest.DB, addr, tokenEnv, extra, observers string) string {
	admin := fmt.Sprintf("{listen: %q}", addr)
	if tokenEnv != "" {
		admin = fmt.Sprintf("{listen: %q, token_env: %s}", addr, tokenEnv)
	}
	return fmt.Sprintf(`
source:
  dsn: %q
  slot: obs_slot
  publication: obs_pub
  manage_slot: true
  status_interval: 1s
  reconnect: {initial_delay: 100ms, max_delay: 2s}
checkpoints: {enabled: true, interval: 200ms}
admin: %s
logging: {level: debug}
%s
observers:
%s`, db.DSN(), admin, strings.TrimSpace(extra), observers)
}

// startAndWait starts the service and waits until /readyz says it streams.
func startAndWait(t *testing.T, cfg, addr string) *proc {
	t.Helper()
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 60*time.Second, "the service to be ready", func() bool {
		if p.exited() {
			t.Fatalf("the service exited:\n%s", p.output())
		}
		return httpStatus(addr, "/readyz") == http.StatusOK
	})
	return p
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
