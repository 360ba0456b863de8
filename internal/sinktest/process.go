package sinktest

import (
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a server process (redis-server, nats-server, ...) started for a test and
// killed when the test ends. Its output is printed when the test fails.
type Process struct {
	t    testing.TB
	name string
	args []string
	addr string // host:port that accepts connections when the server is up
	out  LockedBuffer
	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
	// Env is added to the process environment; Dir is its working directory.
	Env []string
	Dir string
}

// StartProcess starts name with args and waits until addr accepts TCP connections.
// A missing binary fails the test when CI=true and skips it otherwise.
func StartProcess(t testing.TB, addr, name string, args ...string) *Process {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true): %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	p := &Process{t: t, name: name, args: args, addr: addr}
	p.Start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// Start (re)starts the process and waits up to 60s for its address to accept.
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	cmd := exec.Command(p.name, p.args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
	done := make(chan struct{})
	p.done = done
	p.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			p.t.Fatalf("%s exited at start:\n%s", p.name, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("%s did not accept connections on %s within 60s", p.name, p.addr)
}

// Kill kills the process group with SIGKILL and waits for it to exit.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s did not exit within 30s after SIGKILL", p.name)
	}
}

// Restart kills the process and starts it again with the same arguments.
func (p *Process) Restart() {
	p.Kill()
	p.Start()
}
