package file

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func lines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func TestPoliciesWriteEveryEventOnce(t *testing.T) {
	for _, policy := range []string{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(policy, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			s, err := New(t.Context(), Config{Path: path, Fsync: policy}, sinks.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			evs := sinktest.Events(2000, 50)
			sinktest.Run(t, s, evs, sinktest.RunOptions{Concurrency: 8, BatchSize: 32})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			got := lines(t, path)
			if len(got) != len(evs) {
				t.Fatalf("unexpected line count; got %d; want %d", len(got), len(evs))
			}
			seen := map[string]bool{}
			for _, m := range got {
				seen[m["id"].(string)] = true
			}
			if len(seen) != len(evs) {
				t.Fatalf("duplicate or missing ids: %d distinct of %d", len(seen), len(evs))
			}
		})
	}
}

func TestRepairCutsIncompleteLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	good := `{"id":"0/1:1"}` + "\n"
	if err := os.WriteFile(path, []byte(good+`{"id":"0/1:2","tab`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(t.Context(), Config{Path: path}, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ev := sinktest.Events(1, 1)[0]
	if err := s.Deliver(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := lines(t, path)
	if len(got) != 2 || got[0]["id"] != "0/1:1" || got[1]["id"] != ev.ID.String() {
		t.Fatalf("unexpected lines after repair: %v", got)
	}
}

func TestConcurrentDeliveriesShareFsync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := New(t.Context(), Config{Path: path}, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	evs := sinktest.Events(400, 400)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := i; j < len(evs); j += 8 {
				if err := s.Deliver(context.Background(), evs[j]); err != nil {
					t.Error(err)
				}
			}
		}(i)
	}
	wg.Wait()
	s.Close()
	if n := len(lines(t, path)); n != len(evs) {
		t.Fatalf("unexpected line count %d", n)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{}, {Path: "x", Fsync: "sometimes"}, {Path: "x", FsyncInterval: -1}} {
		if err := c.Validate(); err == nil {
			t.Fatalf("expected an error for %+v", c)
		}
	}
}
