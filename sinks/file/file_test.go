package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/decoder"
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

// smallTmpfs mounts a tmpfs of size bytes on a temporary directory and returns it.
// Mounting needs root: elsewhere the test is skipped, but under CI=true it fails.
func smallTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("mounting a small tmpfs needs root")
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		fail("mount a %d-byte tmpfs: %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// bigEvents returns n events of about 1 KB of JSON each.
func bigEvents(n int) []*decoder.Event {
	evs := sinktest.Events(n, n)
	for _, ev := range evs {
		row := *ev.New
		row.Names = append(append([]string(nil), row.Names...), "doc")
		row.Values = append(append([]json.RawMessage(nil), row.Values...), json.RawMessage(`"`+strings.Repeat("x", 900)+`"`))
		ev.New = &row
	}
	return evs
}

// fileIDs returns the ids of the lines of path, failing the test when the file does
// not end with a newline or holds a line that is not JSON.
func fileIDs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("the file ends with a partial line: %q", data[max(0, len(data)-80):])
	}
	var ids []string
	for line := range bytes.Lines(data) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d is not JSON (%v): %.120q", len(ids)+1, err, line)
		}
		ids = append(ids, m["id"].(string))
	}
	return ids
}

// TestDiskFullCutsPartialLine: on a full 64 KiB tmpfs a write stops in the middle of
// a line. The partial line is cut at once, so the file holds exactly the acknowledged
// events, and once space is back the next event starts on a line of its own (it was
// fused to the partial line before).
func TestDiskFullCutsPartialLine(t *testing.T) {
	dir := smallTmpfs(t, 64<<10)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 16<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "out.jsonl")
	s, err := New(t.Context(), Config{Path: path}, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs := bigEvents(200)
	var delivered []string
	failed := 0
	next := 0
	for ; next < len(evs) && failed < 5; next++ {
		if err := s.Deliver(t.Context(), evs[next]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("unexpected error %v; want ENOSPC", err)
			}
			failed++
			continue
		}
		if failed > 0 {
			t.Fatalf("event %d delivered after a failure on a full disk", next)
		}
		delivered = append(delivered, evs[next].ID.String())
	}
	if failed == 0 || len(delivered) == 0 {
		t.Fatalf("unexpected outcome: %d delivered, %d failed; the disk never filled", len(delivered), failed)
	}
	if got := fileIDs(t, path); !slices.Equal(got, delivered) {
		t.Fatalf("the file does not hold exactly the delivered events; got %d lines; want %d", len(got), len(delivered))
	}

	// Space comes back: the next event is a line of its own.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(t.Context(), evs[next]); err != nil {
		t.Fatal(err)
	}
	delivered = append(delivered, evs[next].ID.String())
	next++
	if got := fileIDs(t, path); !slices.Equal(got, delivered) {
		t.Fatalf("unexpected lines after space came back; got %d; want %d", len(got), len(delivered))
	}

	// A batch that fills the disk again: the events written whole are delivered,
	// the rest fail, and nothing partial stays.
	batch := evs[next : next+30]
	errs := make([]error, len(batch))
	s.DeliverBatch(t.Context(), batch, errs)
	whole := 0
	for whole < len(errs) && errs[whole] == nil {
		delivered = append(delivered, batch[whole].ID.String())
		whole++
	}
	for i := whole; i < len(errs); i++ {
		if errs[i] == nil {
			t.Fatalf("batch event %d delivered after event %d failed", i, whole)
		}
	}
	if whole == 0 || whole == len(batch) {
		t.Fatalf("unexpected batch outcome: %d of %d delivered; want a partial write", whole, len(batch))
	}
	if got := fileIDs(t, path); !slices.Equal(got, delivered) {
		t.Fatalf("unexpected lines after a partial batch; got %d; want %d", len(got), len(delivered))
	}
}

// slowSync replaces the sink's fsync: every call is counted, the first blocks until
// release is closed, and a call returns the error fail gives for its number (from 1).
type slowSync struct {
	s       *Sink
	release chan struct{}
	fail    func(n int) error
	mu      sync.Mutex
	calls   int
	durable int64 // file size when the last successful fsync began
}

func newSlowSync(s *Sink, fail func(int) error) *slowSync {
	ss := &slowSync{s: s, release: make(chan struct{}), fail: fail}
	real := s.f.Sync
	s.fsync = func() error {
		ss.mu.Lock()
		ss.calls++
		n := ss.calls
		ss.mu.Unlock()
		st, err := s.f.Stat()
		if err != nil {
			return err
		}
		if n == 1 {
			<-ss.release
		}
		if err := ss.fail(n); err != nil {
			return err
		}
		if err := real(); err != nil {
			return err
		}
		ss.mu.Lock()
		ss.durable = max(ss.durable, st.Size())
		ss.mu.Unlock()
		return nil
	}
	return ss
}

func (ss *slowSync) counts() (calls int, durable int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.calls, ss.durable
}

// waitWrites waits until the sink has done n writes (a count, not a time).
func waitWrites(s *Sink, n uint64) {
	for {
		s.wmu.Lock()
		done := s.seq >= n
		s.wmu.Unlock()
		if done {
			return
		}
		runtime.Gosched()
	}
}

// TestGroupCommit: while one fsync runs, N single-event deliveries write their lines
// and wait; they share the next fsync instead of one each, and each is acknowledged
// only once an fsync that began after its line was written has completed.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := New(t.Context(), Config{Path: path}, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ss := newSlowSync(s, func(int) error { return nil })
	const n = 64
	evs := sinktest.Events(n, n)
	var wg sync.WaitGroup
	for i, ev := range evs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Deliver(t.Context(), ev); err != nil {
				t.Error(err)
				return
			}
			// Acknowledged: its line lies within what a completed fsync covered.
			_, durable := ss.counts()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			at := bytes.Index(data, []byte(`"id":"`+ev.ID.String()+`"`))
			if at < 0 || int64(bytes.IndexByte(data[at:], '\n')+at) >= durable {
				t.Errorf("event %d acknowledged before an fsync covered its line (line at %d, fsynced %d bytes)", i, at, durable)
			}
		}()
	}
	waitWrites(s, n) // every line written while the first fsync is still running
	close(ss.release)
	wg.Wait()
	if calls, _ := ss.counts(); calls > 2 {
		t.Fatalf("unexpected fsyncs for %d concurrent deliveries during a slow fsync; got %d; want at most 2", n, calls)
	}
	if got := len(lines(t, path)); got != n {
		t.Fatalf("unexpected line count; got %d; want %d", got, n)
	}
}

// TestFailedFsyncFailsEveryWriteItMayHaveCovered: an fsync fails while another
// delivery's line was written. That line's pages may have been part of the failed
// writeback, and Linux reports such an error only once: the next fsync succeeds without
// the data being on disk. Both deliveries must fail (their events come again).
func TestFailedFsyncFailsEveryWriteItMayHaveCovered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := New(t.Context(), Config{Path: path}, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ss := newSlowSync(s, func(n int) error {
		if n == 1 {
			return syscall.EIO
		}
		return nil
	})
	evs := sinktest.Events(3, 3)
	errs := make(chan error, 2)
	go func() { errs <- s.Deliver(t.Context(), evs[0]) }()
	waitWrites(s, 1)
	go func() { errs <- s.Deliver(t.Context(), evs[1]) }() // written during the failing fsync
	waitWrites(s, 2)
	close(ss.release)
	for range 2 {
		if err := <-errs; !errors.Is(err, syscall.EIO) {
			t.Fatalf("unexpected delivery result %v; want EIO for both deliveries", err)
		}
	}
	// Written after the failure was reported: the next fsync covers it.
	if err := s.Deliver(t.Context(), evs[2]); err != nil {
		t.Fatalf("unexpected error after the failed fsync: %v", err)
	}
}
