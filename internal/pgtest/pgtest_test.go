package pgtest

import (
	"context"

	"github.com/jackc/pgx/v5"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m, Options{}) }

func TestServerIsLogical(t *testing.T) {
	db := NewDB(t)
	if got := QueryValue[string](db, "SHOW wal_level"); got != "logical" {
		t.Fatalf("unexpected wal_level; got %q; want %q", got, "logical")
	}
	db.Exec("CREATE TABLE t (id int PRIMARY KEY, v text)")
	db.CreatePublication("pub", "t")
	if lsn := db.CreateSlot("slot"); lsn == "" {
		t.Fatalf("empty consistent point")
	}
	db.Exec("INSERT INTO t VALUES (1, 'a')")
	n := QueryValue[int64](db, `SELECT count(*) FROM pg_logical_slot_peek_binary_changes('slot', NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')`)
	if n != 4 { // Begin, Relation, Insert, Commit
		t.Fatalf("unexpected message count; got %d; want 4", n)
	}
}

func TestKillAndStart(t *testing.T) {
	s := Shared(t)
	db := NewDB(t)
	db.Exec("CREATE TABLE k (id int)")
	db.Exec("INSERT INTO k VALUES (1)")
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Exec(ctx, db.Name, "SELECT 1"); err == nil {
		t.Fatalf("server still answers after Kill")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if got := QueryValue[int64](db, "SELECT count(*) FROM k"); got != 1 {
		t.Fatalf("unexpected row count after crash recovery; got %d; want 1", got)
	}
}

func TestSocketDSN(t *testing.T) {
	s := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgxConnect(ctx, s.SocketDSN("postgres"))
	if err != nil {
		t.Fatalf("connect over the unix socket: %v", err)
	}
	conn.Close(ctx)
}

func pgxConnect(ctx context.Context, dsn string) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }
