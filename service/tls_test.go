package service

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestUnverifiedTLS(t *testing.T) {
	f := func(dsn string, warn bool) {
		t.Helper()
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, why := UnverifiedTLS(cc); (why != "") != warn {
			t.Fatalf("%s: unexpected verdict %q; want a warning: %v", dsn, why, warn)
		}
	}
	f("postgres://u@127.0.0.1:5432/db?sslmode=disable", false)
	f("postgres://u@localhost/db?sslmode=disable", false)
	f("postgres://u@/db?host=/tmp&sslmode=disable", false)
	f("postgres://u@db.example.com/db?sslmode=disable", true)
	f("postgres://u@db.example.com/db", true) // prefer
	f("postgres://u@db.example.com/db?sslmode=require", true)
	f("postgres://u@db.example.com/db?sslmode=verify-full", false)
}
