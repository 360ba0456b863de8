// Package file is the file and stdout action: every event as one line of JSON (the
// event shape of docs/events.md), appended to a file. A delivery is acknowledged only
// after its lines are written and, by default, fsynced.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Fsync policies.
const (
	FsyncAlways   = "always"   // fsync before acknowledging (concurrent deliveries share one fsync)
	FsyncInterval = "interval" // acknowledge after the write; fsync every FsyncInterval
	FsyncNever    = "never"    // acknowledge after the write; the OS flushes when it likes
)

// Config is the action configuration (YAML keys of a `type: file` action). Zero
// values mean the documented defaults, which Defaults fills.
type Config struct {
	// Path of the file.
	Path string `yaml:"path"`
	// Fsync is always (default), interval or never. With interval and never, events
	// acknowledged shortly before a power loss can be missing from the file; a crash of
	// the process alone loses nothing.
	Fsync string `yaml:"fsync"`
	// FsyncInterval is the period of fsync under the interval policy (default 1s).
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// Batch is batch_size: the most events one write carries (default
	// pipeline.batch_size).
	sinks.Batch `yaml:",inline"`
}

// Defaults fills the keys left out: fsync always, fsync_interval 1s.
func (c *Config) Defaults() {
	if c.Fsync == "" {
		c.Fsync = FsyncAlways
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = time.Second
	}
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults.
func (c *Config) Validate() error {
	if c.Path == "" {
		return errors.New("path is required")
	}
	if c.Path == "-" {
		return sinks.KeyErrorf("path", errors.New("use the stdout action to write to standard output"))
	}
	switch c.Fsync {
	case "", FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return fmt.Errorf("fsync must be always, interval or never, not %q", c.Fsync)
	}
	if c.FsyncInterval < 0 {
		return errors.New("fsync_interval must not be negative")
	}
	if err := c.checkPath(); err != nil {
		return sinks.KeyErrorf("path", err)
	}
	return c.Batch.Check()
}

// checkPath checks, without creating anything, that the file can be opened where
// Path says: its directory exists and Path is not a directory.
func (c *Config) checkPath() error {
	dir := filepath.Dir(c.Path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist", dir)
	case err != nil:
		return err // "stat DIR: reason"
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, err := os.Stat(c.Path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory", c.Path)
	}
	return nil
}

// StdoutConfig is the configuration of a `type: stdout` action: every event as
// one line of JSON on standard output, without fsync.
type StdoutConfig struct {
	// Batch is batch_size: the most events one write carries (default
	// pipeline.batch_size).
	sinks.Batch `yaml:",inline"`
}

// Defaults does nothing: stdout has no key with a default of its own.
func (c *StdoutConfig) Defaults() {}

// Validate checks batch_size.
func (c *StdoutConfig) Validate() error { return c.Batch.Check() }

// syncGroup is the writes one fsync covers. Its outcome is set, under Sink.smu, when
// that fsync returned: synced, or err.
type syncGroup struct {
	synced bool
	err    error
}

// Sink appends events to a file. It is safe for concurrent use.
type Sink struct {
	cfg Config
	w   io.Writer
	f   *os.File // nil for stdout
	wmu sync.Mutex
	buf []byte
	seq uint64 // writes done, guarded by wmu
	// torn is set when a failed write left a partial line that could not be cut
	// off yet; nothing more is written until it is. Guarded by wmu.
	torn bool
	// regular reports whether the file is a regular file, which can be truncated.
	regular bool
	// cur is the group of the writes done since the last fsync began (guarded by wmu):
	// the next fsync covers them all (group commit).
	cur *syncGroup
	// fsync syncs the file (f.Sync; tests replace it).
	fsync func() error
	// smu is held while an fsync runs; who holds it decides groups' outcomes.
	smu  sync.Mutex
	stop chan struct{}
	done chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// New fills cfg's defaults, validates it and opens (creating if needed) the file
// for appending (its directory must exist). A last line left incomplete by a crash
// is cut off: it was never acknowledged, so its event comes again. With fsync: interval it starts the
// goroutine that syncs; Close stops it.
func New(_ context.Context, cfg Config, _ sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, sinks.KeyErrorf("path", err) // an *fs.PathError: "open PATH: reason"
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, sinks.KeyErrorf("path", err)
	}
	s.regular = st.Mode().IsRegular()
	if s.regular {
		if err := repairTail(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("repair %s: %w", cfg.Path, err)
		}
	}
	s.f, s.w, s.fsync = f, f, f.Sync
	if cfg.Fsync == FsyncInterval {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

// NewStdout returns a sink writing to standard output.
func NewStdout(_ context.Context, cfg StdoutConfig, _ sinks.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sink{cfg: Config{Path: "-", Fsync: FsyncNever, Batch: cfg.Batch}, w: os.Stdout}, nil
}

// repairTail truncates the file after its last newline.
func repairTail(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				cut := end - n + i + 1
				if cut == size {
					return nil
				}
				return f.Truncate(cut)
			}
		}
		end -= n
	}
	return f.Truncate(0)
}

// Deliver appends one event.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	errs := []error{nil}
	s.DeliverBatch(ctx, []*decoder.Event{ev}, errs)
	return errs[0]
}

// DeliverBatch appends the events with one write and, under the always policy, waits
// for an fsync covering them (group commit: while one fsync runs, the lines of other
// deliveries are written, and the next fsync covers them all). When the write fails
// part way (a full disk), the events whose lines were written whole are delivered,
// the partial line after them is cut off before anything else is written, and the
// other events fail. When the fsync fails, every event it may have covered fails.
func (s *Sink) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	whole, g, err := s.write(evs)
	var serr error
	if whole > 0 && s.f != nil && s.cfg.Fsync == FsyncAlways {
		serr = s.sync(g)
	}
	for i := range errs {
		switch {
		case serr != nil:
			errs[i] = serr
		case i < whole:
			errs[i] = nil
		default:
			errs[i] = err
		}
	}
}

// write appends the events' lines and returns how many of them were written whole
// and the group of writes whose fsync covers them.
func (s *Sink) write(evs []*decoder.Event) (int, *syncGroup, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.torn {
		if err := s.cutTorn(); err != nil {
			return 0, nil, err
		}
	}
	s.buf = s.buf[:0]
	for _, ev := range evs {
		s.buf = ev.AppendJSON(s.buf) // straight into the write buffer: no copy kept per event
		s.buf = append(s.buf, '\n')
	}
	n, err := s.w.Write(s.buf)
	whole := len(evs)
	if err != nil {
		whole = bytes.Count(s.buf[:n], []byte{'\n'})
		err = s.pathError("write", err)
		if n > 0 && s.buf[n-1] != '\n' {
			// A partial line: cut it off now, so that no later line is fused to it.
			s.torn = true
			if cerr := s.cutTorn(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}
	var g *syncGroup
	if whole > 0 {
		s.seq++
		g = s.group()
	}
	if cap(s.buf) > 1<<20 {
		s.buf = nil
	}
	return whole, g, err
}

// group returns the group of the writes since the last fsync began; wmu is held.
func (s *Sink) group() *syncGroup {
	if s.cur == nil {
		s.cur = &syncGroup{}
	}
	return s.cur
}

// cutTorn cuts the file after its last complete line, which a failed write left
// incomplete. Standard output, pipes and devices cannot be cut: their reader sees
// the partial line.
func (s *Sink) cutTorn() error {
	if s.f == nil || !s.regular {
		s.torn = false
		return nil
	}
	if err := repairTail(s.f); err != nil {
		return fmt.Errorf("cut the partial last line of %s (nothing more is written until it is): %w", s.cfg.Path, err)
	}
	s.torn = false
	return nil
}

// pathError names the file in err unless the os package already did.
func (s *Sink) pathError(op string, err error) error {
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return err
	}
	return fmt.Errorf("%s %s: %w", op, s.cfg.Path, err)
}

// sync returns once the fsync covering the writes of g has completed, with its error.
// The first caller to find no fsync running starts the one for the current group;
// callers that queue behind an fsync in progress usually find theirs done by the time
// they get their turn, so concurrent deliveries share fsyncs, and fsyncs follow each
// other as fast as the disk completes them.
func (s *Sink) sync(g *syncGroup) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	if g.synced || g.err != nil {
		return g.err
	}
	s.syncCurrent() // g is the current group: no fsync began after its write
	return g.err
}

// syncCurrent fsyncs the writes of the current group and sets its outcome; smu is held.
// After a failed fsync, the writes done while it ran fail too: their pages may have
// been part of the failed writeback, and the kernel reports the error only once, so a
// later fsync would succeed without their data on disk.
func (s *Sink) syncCurrent() {
	s.wmu.Lock()
	g := s.cur
	s.cur = nil
	s.wmu.Unlock()
	if g == nil {
		return // nothing written since the last fsync began
	}
	if err := s.fsync(); err != nil {
		g.err = s.pathError("fsync", err)
		s.wmu.Lock()
		if s.cur != nil {
			s.cur.err, s.cur = g.err, nil
		}
		s.wmu.Unlock()
		return
	}
	g.synced = true
}

func (s *Sink) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.smu.Lock()
			s.syncCurrent()
			s.smu.Unlock()
		}
	}
}

// Close fsyncs and closes the file. Calls after the first return its result.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		if s.f == nil {
			return
		}
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
		s.closeErr = s.f.Sync()
		if err := s.f.Close(); s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}
