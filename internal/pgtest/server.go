// Package pgtest runs a real, throwaway PostgreSQL server for tests: initdb into a
// temporary directory, wal_level=logical, a unix socket in a short temporary directory
// and a loopback TCP port chosen at start. One server serves a whole test binary
// (see Main); each test gets its own database, publication and slot.
//
// When the test process runs as root, the server runs as the "postgres" OS user
// (postgres refuses to run as root). With CI=true in the environment a missing
// PostgreSQL installation is a failure, never a skip.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned by Start when no PostgreSQL binaries can be found.
var ErrNoPostgres = errors.New("postgresql server binaries (initdb, pg_ctl, postgres) not found; install postgresql-15 or set PG_BINDIR")

// Options configures a Server. The zero value is usable.
type Options struct {
	// Settings are extra postgresql.conf settings, added after (and overriding) the
	// defaults of DefaultSettings.
	Settings map[string]string
}

// DefaultSettings are the postgresql.conf settings every test server starts with.
// fsync is off: tests kill processes, never the operating system, so written data
// survives a crash of the server without it, and tests run several times faster.
var DefaultSettings = map[string]string{
	"wal_level":                "logical",
	"max_wal_senders":          "40",
	"max_replication_slots":    "40",
	"max_connections":          "200",
	"shared_buffers":           "64MB",
	"fsync":                    "off",
	"full_page_writes":         "off",
	"synchronous_commit":       "on",
	"log_replication_commands": "on",
	"log_min_messages":         "warning",
	"log_line_prefix":          "'%m [%p] %d '",
	"listen_addresses":         "'127.0.0.1'",
	"wal_sender_timeout":       "60s",
	"max_wal_size":             "256MB",
	"timezone":                 "'UTC'",
}

// Server is a running (or stopped) throwaway PostgreSQL cluster. Its methods are safe
// for concurrent use.
type Server struct {
	BinDir    string // directory holding initdb, pg_ctl and postgres
	Dir       string // temporary directory holding the data directory and the socket
	DataDir   string
	SocketDir string
	Port      int
	LogFile   string

	mu      sync.Mutex
	running bool
	cred    *syscall.Credential
	dbSeq   int
}

// Start initialises a new cluster in a temporary directory and starts it.
func Start(opts Options) (*Server, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/tmp", "pgt")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	s := &Server{
		BinDir:    bin,
		Dir:       dir,
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: dir,
		LogFile:   filepath.Join(dir, "postgres.log"),
	}
	if err := s.setOwner(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.initdb(opts); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		if lastErr = s.Start(); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// setOwner arranges for the server to run as the postgres OS user when we are root.
func (s *Server) setOwner() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs the postgres OS user to run the server: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return os.Chown(s.Dir, uid, gid)
}

func findBinDir() (string, error) {
	var candidates []string
	if d := os.Getenv("PG_BINDIR"); d != "" {
		candidates = append(candidates, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	candidates = append(candidates, "/usr/lib/postgresql/15/bin")
	if matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(matches) > 0 {
		sort.Sort(sort.Reverse(sort.StringSlice(matches)))
		candidates = append(candidates, matches...)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		ok := true
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				ok = false
				break
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// command builds a command running a server binary as the server's OS user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.BinDir, name), args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *Server) run(name string, args ...string) error {
	cmd := s.command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return nil
}

func (s *Server) initdb(opts Options) error {
	if err := s.run("initdb", "-D", s.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return err
	}
	settings := map[string]string{}
	for k, v := range DefaultSettings {
		settings[k] = v
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	conf.WriteString("\n# pgtest\n")
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(s.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(conf.String()); err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	hba := "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n" +
		"local replication all trust\nhost replication all 127.0.0.1/32 trust\n"
	if err := os.WriteFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("write pg_hba.conf: %w", err)
	}
	if s.cred != nil {
		os.Chown(filepath.Join(s.DataDir, "pg_hba.conf"), int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

// Start starts the server (again, after Stop or Kill) on its port and waits until it
// accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	opts := fmt.Sprintf("-p %d -k %s", s.Port, s.SocketDir)
	if err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.DataDir, "-l", s.LogFile, "-o", opts); err != nil {
		return fmt.Errorf("start postgres: %w\n%s", err, s.tailLog())
	}
	s.running = true
	return nil
}

// StartStandby makes a physical streaming standby of s with pg_basebackup (which
// also writes its primary_conninfo and standby.signal) in a new temporary directory,
// and starts it on a free port. The standby has the primary's system identifier and
// data, but none of its logical replication slots.
func (s *Server) StartStandby() (*Server, error) {
	dir, err := os.MkdirTemp("/tmp", "pgt")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	st := &Server{
		BinDir:    s.BinDir,
		Dir:       dir,
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: dir,
		LogFile:   filepath.Join(dir, "postgres.log"),
	}
	if err := st.setOwner(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := st.run("pg_basebackup", "-h", s.SocketDir, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-D", st.DataDir,
		"-R", "-X", "stream", "--no-sync", "--checkpoint=fast"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if st.Port, err = freePort(); err != nil {
			return nil, err
		}
		if lastErr = st.Start(); lastErr == nil {
			return st, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// Promote turns a standby into a primary and waits until it accepts writes.
func (s *Server) Promote() error {
	return s.run("pg_ctl", "promote", "-w", "-t", "60", "-D", s.DataDir)
}

// Stop shuts the server down cleanly (fast mode) and waits for it to exit.
func (s *Server) Stop() error { return s.stop("fast") }

// Kill stops the server in immediate mode: every process exits at once without a
// shutdown checkpoint, as in a crash; the next Start runs crash recovery.
func (s *Server) Kill() error { return s.stop("immediate") }

// StopMode shuts the server down in mode ("smart", "fast" or "immediate") and waits
// at most timeout for it to exit. When it does not, pg_ctl's error ("server does not
// shut down") is returned and the server goes on shutting down: Kill ends it.
func (s *Server) StopMode(mode string, timeout time.Duration) error {
	return s.stopWithin(mode, timeout)
}

func (s *Server) stop(mode string) error { return s.stopWithin(mode, time.Minute) }

func (s *Server) stopWithin(mode string, timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	secs := strconv.Itoa(max(1, int(timeout.Round(time.Second)/time.Second)))
	if err := s.run("pg_ctl", "stop", "-w", "-t", secs, "-m", mode, "-D", s.DataDir); err != nil {
		return err
	}
	s.running = false
	return nil
}

// Restart stops the server cleanly and starts it again on the same port.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Reload makes the server re-read its configuration (after ALTER SYSTEM).
func (s *Server) Reload() error {
	return s.run("pg_ctl", "reload", "-D", s.DataDir)
}

// Remove stops the server if it runs and deletes its directory.
func (s *Server) Remove() error {
	err := s.Kill()
	if rmErr := os.RemoveAll(s.Dir); err == nil {
		err = rmErr
	}
	return err
}

// DSN returns a connection URL for database db over loopback TCP as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// SocketDSN returns a connection URL for database db over the unix socket.
func (s *Server) SocketDSN(db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", db, s.SocketDir, s.Port)
}

// Connect opens a plain connection to database db.
func (s *Server) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.DSN(db))
}

// Exec runs SQL in database db on a fresh connection.
func (s *Server) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := s.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// tailLog returns the last lines of the server log, for error messages.
func (s *Server) tailLog() string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "postgres log (tail):\n" + strings.Join(lines, "\n")
}

// Log returns the whole server log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// CreateDatabase creates a fresh database with a name unique within this server.
func (s *Server) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	s.mu.Lock()
	s.dbSeq++
	name := fmt.Sprintf("%s_%d", sanitize(prefix), s.dbSeq)
	s.mu.Unlock()
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, nil
}

// DropDatabase drops a database and every replication slot in it, ending sessions
// that still use them.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	conn, err := s.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
	for i := 0; i < 50; i++ {
		_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		var n int
		if err == nil {
			err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).Scan(&n)
		}
		if err == nil && n == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 40 {
		out = out[:40]
	}
	if out == "" || (out[0] >= '0' && out[0] <= '9') {
		out = "t_" + out
	}
	return out
}
