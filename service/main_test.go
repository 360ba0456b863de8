package service

import (
	"testing"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }
