package redis

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func newCache(t *testing.T, url, pattern string) *Cache {
	t.Helper()
	c, err := NewCache(t.Context(), CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret(url)}, KeyPattern: pattern}, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// setKeys creates each key with a small value.
func setKeys(t *testing.T, c *goredis.Client, keys ...string) {
	t.Helper()
	pipe := c.Pipeline()
	for _, k := range keys {
		pipe.Set(sinktest.Context(t), k, "v", 0)
	}
	if _, err := pipe.Exec(sinktest.Context(t)); err != nil {
		t.Fatal(err)
	}
}

// exists reports which of keys exist.
func exists(t *testing.T, c *goredis.Client, keys ...string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, k := range keys {
		n, err := c.Exists(sinktest.Context(t), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = n == 1
	}
	return out
}

// withID returns ev with its id column (new and key) set to the JSON value id.
func withID(ev *decoder.Event, id string) *decoder.Event {
	return &decoder.Event{ID: ev.ID, LSN: ev.LSN, Xid: ev.Xid, CommitTime: ev.CommitTime, Schema: ev.Schema,
		Table: ev.Table, Op: ev.Op,
		New: &decoder.Row{Names: ev.New.Names, Values: append([]json.RawMessage{json.RawMessage(id)}, ev.New.Values[1:]...)},
		Key: &decoder.Row{Names: ev.Key.Names, Values: []json.RawMessage{json.RawMessage(id)}}}
}

func TestCacheSingleKey(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	var keys []string
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("order:%d", i))
	}
	setKeys(t, rc, keys...)
	evs := sinktest.Events(10, 10) // ids 0..9
	sinktest.NoDLQ(t, sinktest.Run(t, newCache(t, srv.url(), "order:{{ new.id }}"), evs, sinktest.RunOptions{}))
	for k, ok := range exists(t, rc, keys...) {
		var i int
		fmt.Sscanf(k, "order:%d", &i)
		if want := i >= 10; ok != want {
			t.Errorf("unexpected existence of %s; got %v; want %v", k, ok, want)
		}
	}
}

func TestCachePattern(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	// 3000 keys per customer id, so a pass takes several SCAN calls.
	var all []string
	for id := range 3 {
		for j := range 3000 {
			all = append(all, fmt.Sprintf("orders:%d:%d", id, j))
		}
	}
	all = append(all, "orders:10:0", "orders:1", "other:1:0")
	setKeys(t, rc, all...)
	evs := sinktest.Events(2, 2) // ids 0 and 1
	sinktest.NoDLQ(t, sinktest.Run(t, newCache(t, srv.url(), "orders:{{ new.id }}:*"), evs, sinktest.RunOptions{}))
	for k, ok := range exists(t, rc, all...) {
		want := !(strings.HasPrefix(k, "orders:0:") || strings.HasPrefix(k, "orders:1:"))
		if ok != want {
			t.Fatalf("unexpected existence of %s; got %v; want %v", k, ok, want)
		}
	}
}

// TestCacheGlobInjection: event values are escaped before they are substituted, so a
// value of "*" (or "?" or "[") names itself and never widens the match.
func TestCacheGlobInjection(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	keys := []string{"user:*", "user:1", "user:?", "user:[1]", `user:a\b`, "user:*:s", "user:1:s", "user:2:s", "user:[12]:s"}
	f := func(pattern, id string, gone ...string) {
		t.Helper()
		setKeys(t, rc, keys...)
		ev := withID(sinktest.Events(1, 1)[0], id)
		c := newCache(t, srv.url(), pattern)
		if err := c.Deliver(sinktest.Context(t), ev); err != nil {
			t.Fatalf("%s with %s: %v", pattern, id, err)
		}
		want := map[string]bool{}
		for _, k := range keys {
			want[k] = true
		}
		for _, k := range gone {
			want[k] = false
		}
		for k, ok := range exists(t, rc, keys...) {
			if ok != want[k] {
				t.Errorf("%s with id %s: unexpected existence of %s; got %v; want %v", pattern, id, k, ok, want[k])
			}
		}
	}
	f("user:{{ new.id }}", `"*"`, "user:*")
	f("user:{{ new.id }}", `"?"`, "user:?")
	f("user:{{ new.id }}", `"[1]"`, "user:[1]")
	f("user:{{ new.id }}", `"a\\b"`, `user:a\b`)
	f("user:{{ new.id }}", `1`, "user:1")
	f("user:{{ new.id }}:*", `"*"`, "user:*:s")
	f("user:{{ new.id }}:*", `"[12]"`, "user:[12]:s")
	f("user:{{ new.id }}:*", `1`, "user:1:s")
	f(`user:\*`, `1`, "user:*") // an escaped glob in the template's text is literal
}

// TestCacheOOM: with maxmemory reached under noeviction, Redis refuses commands that
// may grow memory (OOM) but still runs SCAN and UNLINK, so invalidation works.
func TestCacheOOM(t *testing.T) {
	srv := startRedis(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	rc := srv.client(t)
	fillOOM(t, rc, "orders:")
	evs := sinktest.Events(20, 20)
	sinktest.NoDLQ(t, sinktest.Run(t, newCache(t, srv.url(), "orders:{{ new.id }}:*"), evs, sinktest.RunOptions{}))
	sinktest.NoDLQ(t, sinktest.Run(t, newCache(t, srv.url(), "orders:{{ new.id }}:0"), evs, sinktest.RunOptions{}))
	for k, ok := range exists(t, rc, "orders:0:0", "orders:0:1", "orders:19:3", "orders:25:0") {
		if want := k == "orders:25:0"; ok != want {
			t.Errorf("unexpected existence of %s; got %v; want %v", k, ok, want)
		}
	}
}

// fillOOM writes keys prefix<i>:<j> until Redis answers OOM.
func fillOOM(t *testing.T, rc *goredis.Client, prefix string) {
	t.Helper()
	val := strings.Repeat("x", 1000)
	for i := 0; ; i++ {
		err := rc.Set(sinktest.Context(t), fmt.Sprintf("%s%d:%d", prefix, i%40, i/40), val, 0).Err()
		if goredis.IsOOMError(err) {
			if i < 100 {
				t.Fatalf("OOM after only %d keys", i)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if i > 100000 {
			t.Fatal("no OOM after 100000 keys")
		}
	}
}

// TestCacheReadOnly: a replica refuses writes with READONLY, a transient class: the
// event is retried, then parked in the DLQ when the retries run out.
func TestCacheReadOnly(t *testing.T) {
	primary := startRedis(t)
	replica := startRedis(t, "--replicaof", "127.0.0.1", strings.Split(primary.addr, ":")[1])
	evs := sinktest.Events(2, 2)
	d := sinktest.Run(t, newCache(t, replica.url(), "order:{{ new.id }}"), evs, sinktest.RunOptions{
		Retry: pipeline.RetryPolicy{MaxAttempts: 3, Strategy: pipeline.BackoffFixed}})
	letters := d.Snapshot()
	if len(letters) != 2 {
		t.Fatalf("unexpected dead letters; got %d; want 2", len(letters))
	}
	for _, l := range letters {
		if sinks.Class(l.Err) != "readonly" || l.Attempts != 3 || !pipeline.Retryable(l.Err) {
			t.Errorf("unexpected letter; got class %s, %d attempts, err %v; want readonly after 3", sinks.Class(l.Err), l.Attempts, l.Err)
		}
	}
}

// TestCacheServerRestart kills redis-server in the middle of a run and starts it again
// (AOF with appendfsync always, so keys and deletions survive). Every invalidation
// happens: events that failed while the server was down are retried.
func TestCacheServerRestart(t *testing.T) {
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	rc := srv.client(t)
	const n = 600
	var keys []string
	for i := range n {
		keys = append(keys, fmt.Sprintf("order:%d", i))
	}
	setKeys(t, rc, keys...)
	rc.Close()
	sink := sinktest.KillAfter(newCache(t, srv.url(), "order:{{ new.id }}"), n/4, srv.Process)
	d := sinktest.Run(t, sink, sinktest.Events(n, n), sinktest.RunOptions{Retry: patient})
	sink.Wait(t)
	sinktest.NoDLQ(t, d)
	rc = srv.client(t)
	left, err := rc.DBSize(sinktest.Context(t)).Result()
	if err != nil || left != 0 {
		t.Fatalf("unexpected keys left after the run; got %d, %v; want 0", left, err)
	}
}

func TestCacheConfig(t *testing.T) {
	f := func(cfg CacheConfig, key, want string) {
		t.Helper()
		sinktest.WantKeyError(t, cfg.Validate(), key, want, "s3cret")
	}
	conn := ConnConfig{URL: configs.NewSecret("redis://127.0.0.1:6390/2")}
	f(CacheConfig{ConnConfig: conn, KeyPattern: "k:{{ new.id }}"}, "", "")
	f(CacheConfig{ConnConfig: conn, KeyPattern: "k:{{ new.id }}", Action: "invalidate"}, "", "")
	f(CacheConfig{ConnConfig: conn, KeyPattern: "k", Action: "refresh"}, "action", "not supported")
	f(CacheConfig{ConnConfig: conn, KeyPattern: "k", Action: "drop"}, "action", "must be invalidate")
	f(CacheConfig{ConnConfig: conn}, "key_pattern", "required")
	f(CacheConfig{ConnConfig: conn, KeyPattern: "k:{{ new.id "}, "key_pattern", "unclosed")
	f(CacheConfig{KeyPattern: "k"}, "url", "required")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("http://x")}, KeyPattern: "k"}, "url", "scheme")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://:s3cret@h:1?read_timeout=-1")}, KeyPattern: "k"}, "url", "query parameters")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://:s3cret@h:1/x")}, KeyPattern: "k"}, "url", "not a valid Redis URL")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://:s3cret@h:1\x7f")}, KeyPattern: "k"}, "url", "not a valid URL")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://h"), Timeout: -1}, KeyPattern: "k"}, "timeout", "negative")
	f(CacheConfig{ConnConfig: conn, KeyPattern: "k", ScanTimeout: -1}, "scan_timeout", "negative")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("redis://h"), CAFile: "/etc/hostname"}, KeyPattern: "k"}, "ca_file", "needs a rediss")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("rediss://h"), CAFile: "/nonexistent.pem"}, KeyPattern: "k"}, "ca_file", "no such file")
	f(CacheConfig{ConnConfig: ConnConfig{URL: configs.NewSecret("rediss://h"), CAFile: "/etc/hostname"}, KeyPattern: "k"}, "ca_file", "no PEM certificate")

	c := CacheConfig{ConnConfig: conn, KeyPattern: "k"}
	c.Defaults()
	if err := c.Validate(); err != nil || c.DialTimeout != DefaultDialTimeout || c.Timeout != DefaultTimeout ||
		c.ScanTimeout != DefaultScanTimeout || c.Action != ActionInvalidate {
		t.Fatalf("unexpected defaults; got %+v, %v", c, err)
	}
}

func TestGlobUnescape(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := globUnescape(in); got != want {
			t.Fatalf("unexpected globUnescape(%q); got %q; want %q", in, got, want)
		}
	}
	f("", "")
	f("plain", "plain")
	f(`a\*b`, "a*b")
	f(`\\`, `\`)
	f(`a\?\[\]\\x`, `a?[]\x`)
	f(`end\`, `end\`)
}
