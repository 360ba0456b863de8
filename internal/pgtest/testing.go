package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	shared    *Server
	sharedErr error
)

// Main starts one server for the test binary, runs the tests and removes the server.
// Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }
//
// Without PostgreSQL binaries the tests that need the server are skipped, unless
// CI=true is set, in which case the test binary fails at once.
func Main(m *testing.M, opts Options) {
	os.Exit(run(m, opts))
}

func run(m *testing.M, opts Options) int {
	shared, sharedErr = Start(opts)
	if sharedErr != nil {
		if errors.Is(sharedErr, ErrNoPostgres) && os.Getenv("CI") != "true" {
			fmt.Fprintln(os.Stderr, "pgtest:", sharedErr, "- tests that need PostgreSQL are skipped")
		} else {
			fmt.Fprintln(os.Stderr, "pgtest: start postgres:", sharedErr)
			return 1
		}
	}
	code := m.Run()
	if shared != nil {
		if code != 0 && os.Getenv("PGTEST_KEEP") != "" {
			fmt.Fprintln(os.Stderr, "pgtest: keeping", shared.Dir)
			shared.Kill()
		} else {
			shared.Remove()
		}
	}
	return code
}

// Shared returns the server started by Main. It skips the test when PostgreSQL is not
// installed (and CI is not set), and fails it when Main was not called.
func Shared(t testing.TB) *Server {
	t.Helper()
	if shared == nil {
		if sharedErr != nil {
			t.Skip("pgtest:", sharedErr)
		}
		t.Fatal("pgtest: no server; call pgtest.Main from TestMain")
	}
	return shared
}

// DB is a database created for one test and dropped when the test ends.
type DB struct {
	Server *Server
	Name   string
	t      testing.TB
}

// NewDB creates a database for t on the shared server. It is dropped, together with
// its replication slots, when t ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	return NewDBOn(t, Shared(t))
}

// NewDBOn creates a database for t on s, a server of the test's own (a test that
// needs settings the shared server must not have). It is dropped when t ends.
func NewDBOn(t testing.TB, s *Server) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, err := s.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	d := &DB{Server: s, Name: name, t: t}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Start(); err != nil { // a test may have left it stopped
			t.Errorf("pgtest: restart server for cleanup: %v", err)
			return
		}
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return d
}

// DSN returns the loopback TCP connection URL of the database.
func (d *DB) DSN() string { return d.Server.DSN(d.Name) }

// Conn opens a connection to the database that is closed when the test ends.
func (d *DB) Conn() *pgx.Conn {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.DSN())
	if err != nil {
		d.t.Fatalf("pgtest: connect to %s: %v", d.Name, err)
	}
	d.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Pool opens a connection pool on dsn (usually DB.DSN) that is closed when t ends.
// It connects lazily, at the first query.
func Pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Exec runs SQL (one or more statements when there are no arguments) in the database
// on a fresh connection, failing the test on error.
func (d *DB) Exec(sql string, args ...any) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := d.Server.Exec(ctx, d.Name, sql, args...); err != nil {
		d.t.Fatalf("pgtest: exec %q: %v", abbreviate(sql), err)
	}
}

// QueryValue runs a query returning one value and scans it into a new T.
func QueryValue[T any](d *DB, sql string, args ...any) T {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := d.Server.Connect(ctx, d.Name)
	if err != nil {
		d.t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	var v T
	if err := conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		d.t.Fatalf("pgtest: query %q: %v", abbreviate(sql), err)
	}
	return v
}

// CreatePublication creates a publication for the given tables, or FOR ALL TABLES
// when none are given.
func (d *DB) CreatePublication(name string, tables ...string) {
	d.t.Helper()
	target := "FOR ALL TABLES"
	if len(tables) > 0 {
		target = "FOR TABLE " + strings.Join(tables, ", ")
	}
	d.Exec(fmt.Sprintf("CREATE PUBLICATION %s %s", pgx.Identifier{name}.Sanitize(), target))
}

// CreateSlot creates a pgoutput logical replication slot and returns its consistent
// point as text ("0/16B3748").
func (d *DB) CreateSlot(name string) string {
	d.t.Helper()
	return QueryValue[string](d, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, name)
}

// CreateSlotWith creates a logical replication slot with the given output plugin
// (test_decoding makes an oracle of what was committed) and returns its consistent
// point as text.
func (d *DB) CreateSlotWith(name, plugin string) string {
	d.t.Helper()
	return QueryValue[string](d, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, $2)`, name, plugin)
}

// SlotConfirmedFlush returns the slot's confirmed_flush_lsn as text.
func (d *DB) SlotConfirmedFlush(name string) string {
	d.t.Helper()
	return QueryValue[string](d, `SELECT coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = $1`, name)
}

func abbreviate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
