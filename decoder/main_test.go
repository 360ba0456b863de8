package decoder

import (
	"os"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

func TestMain(m *testing.M) {
	// Fuzzing needs no server: do not start one in the coordinator and in every worker.
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz=") || strings.HasPrefix(a, "-test.fuzzworker") {
			os.Exit(m.Run())
		}
	}
	pgtest.Main(m, pgtest.Options{})
}
