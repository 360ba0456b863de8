package configs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

func TestDefaults(t *testing.T) {
	cfg, warns := mustParse(t, src, nil)
	want := Default()
	want.File = "c.yaml"
	want.Source.DSN = NewSecret("postgres://app@db/app")
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("unexpected config; got\n%#v\nwant\n%#v", cfg, want)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Msg, "no observers") {
		t.Fatalf("unexpected warnings; got %v; want one about no observers", warns)
	}
	dsn, err := cfg.DSN()
	if err != nil || dsn != "postgres://app@db/app" {
		t.Fatalf("unexpected DSN; got %q, %v", dsn, err)
	}

	// Observer defaults.
	cfg, _ = mustParse(t, obs, nil)
	o := cfg.Observers[0]
	if !reflect.DeepEqual(o.Ops, []decoder.Op{decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete}) {
		t.Fatalf("unexpected default ops; got %v", o.Ops)
	}
	if o.Retry != DefaultRetry() {
		t.Fatalf("unexpected default retry; got %+v; want %+v", o.Retry, DefaultRetry())
	}
	if o.OnFailure != FailureDLQ {
		t.Fatalf("unexpected default on_failure with the DLQ on; got %q; want dlq", o.OnFailure)
	}
	if o.Actions[0].ID != "o.0" {
		t.Fatalf("unexpected action id; got %q; want o.0", o.Actions[0].ID)
	}
	cfg, _ = mustParse(t, obs+"dlq: {enabled: false}\n", nil)
	if got := cfg.Observers[0].OnFailure; got != FailureLog {
		t.Fatalf("unexpected default on_failure with the DLQ off; got %q; want log", got)
	}

	// An empty value means the default.
	cfg, _ = mustParse(t, src+"checkpoints:\npipeline: {batch_size: ~}\n", nil)
	if cfg.Checkpoints != Default().Checkpoints || cfg.Pipeline.BatchSize != 100 {
		t.Fatalf("unexpected values for empty keys; got %+v %+v", cfg.Checkpoints, cfg.Pipeline)
	}
}

func TestFullConfig(t *testing.T) {
	e := env{"PGDSN": "postgres://app@db/app", "ADMIN_TOKEN": "t0k3n"}
	cfg, warns, err := Parse("full.yaml", readFile(t, "testdata/full.yaml"), e.lookup)
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	if len(warns) != 0 {
		t.Fatalf("unexpected warnings: %v", warns)
	}
	want := &Config{
		File:       "full.yaml",
		ListenerID: "listener-2",
		Source: Source{
			DSN:               EnvSecret("PGDSN", "postgres://app@db/app"),
			Slot:              "orders_slot",
			Publication:       "orders_pub",
			ManageSlot:        true,
			ManagePublication: true,
			PublicationTables: []TableRef{{"public", "orders"}, {"public", "customers"}},
			StatusInterval:    5 * time.Second,
			ConnectTimeout:    3 * time.Second,
			Reconnect:         Reconnect{InitialDelay: 500 * time.Millisecond, MaxDelay: 30 * time.Second},
			MaxEventBytes:     16 << 20,
			HeartbeatInterval: 30 * time.Second,
		},
		State:               State{Schema: "observers"},
		Checkpoints:         Checkpoints{Enabled: true, Interval: 2 * time.Second},
		ConcurrentExecution: ConcurrentExecution{MaxConcurrency: 32},
		Deduplication:       Deduplication{CacheEntries: 5000},
		Caching:             Caching{MaxBytes: 128 << 20},
		DLQ:                 DLQ{MaxDLQSize: 10000},
		Pipeline:            Pipeline{MaxInFlightBytes: 256 << 20, BatchSize: 500, ShutdownTimeout: 10 * time.Second},
		Evaluation:          Evaluation{MaxSteps: 50000, Timeout: 250 * time.Millisecond, MaxMemoryBytes: 8 << 20, MaxRenderedBytes: 2 << 20},
		Admin:               Admin{Listen: "0.0.0.0:9100", Token: EnvSecret("ADMIN_TOKEN", "t0k3n")},
		Failover:            Failover{Enabled: true, LeaseDuration: 20 * time.Second, RenewInterval: 5 * time.Second},
		ReplayWindow:        ReplayWindow{Bytes: 256 << 20},
		Snapshot:            Snapshot{Mode: SnapshotInitial, ChunkSize: 500, RowsPerSecond: 2500.5},
		Logging:             Logging{Level: "debug", Format: "console"},
		Entities:            map[string]TableRef{"Order": {"public", "orders"}, "Customer": {"crm", "customers"}},
	}
	fast := Retry{MaxAttempts: 5, BackoffStrategy: BackoffLinear, InitialDelay: 200 * time.Millisecond, MaxDelay: 10 * time.Second}
	pos := func(line, col int) Pos { return Pos{File: "full.yaml", Line: line, Column: col} }
	wantObs := []*Observer{
		{
			Name: "order_shipped", Pos: pos(32, 3), Entity: "Order", EntityPos: pos(33, 13),
			Table: TableRef{"public", "orders"}, Ops: []decoder.Op{decoder.OpUpdate},
			Condition: "field_changed_to('status', 'shipped')", ConditionPos: pos(35, 17), // after the quote
			Actions: []*Action{
				{Type: "webhook", Name: "notify", ID: "order_shipped.notify", Pos: pos(37, 9), TypePos: pos(37, 15)},
				{Type: "slack", ID: "order_shipped.1", Pos: pos(41, 9), TypePos: pos(41, 15)},
			},
			Retry: fast, OnFailure: FailureAlert,
		},
		{
			Name: "customer_changes", Pos: pos(46, 3), Entity: "crm.customers", EntityPos: pos(47, 12),
			Table: TableRef{"crm", "customers"}, Ops: []decoder.Op{decoder.OpInsert, decoder.OpDelete, decoder.OpTruncate, decoder.OpRead},
			Actions:   []*Action{{Type: "log", ID: "customer_changes.0", Pos: pos(50, 9), TypePos: pos(50, 16)}},
			Retry:     Retry{MaxAttempts: 3, BackoffStrategy: BackoffFixed, InitialDelay: 50 * time.Millisecond, MaxDelay: 2 * time.Second},
			OnFailure: FailureLog,
		},
		{
			Name: "app_messages", Pos: pos(53, 3), Ops: []decoder.Op{decoder.OpMessage}, MessagePrefix: "app.audit",
			Actions:   []*Action{{Type: "file", ID: "app_messages.0", Pos: pos(56, 15), TypePos: pos(56, 22)}},
			Retry:     Retry{MaxAttempts: 2, BackoffStrategy: BackoffLinear, InitialDelay: 200 * time.Millisecond, MaxDelay: 10 * time.Second},
			OnFailure: FailureLog,
		},
		{
			Name: "everything", Pos: pos(60, 3), Entity: "*", EntityPos: pos(61, 13), Wildcard: true,
			Ops:       []decoder.Op{decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete},
			Actions:   []*Action{{Type: "log", ID: "everything.0", Pos: pos(62, 15), TypePos: pos(62, 22)}},
			Retry:     DefaultRetry(),
			OnFailure: FailureLog,
		},
	}
	got := *cfg
	got.Observers = nil
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("unexpected config; got\n%#v\nwant\n%#v", &got, want)
	}
	if len(cfg.Observers) != len(wantObs) {
		t.Fatalf("unexpected number of observers; got %d; want %d", len(cfg.Observers), len(wantObs))
	}
	for i, o := range cfg.Observers {
		for _, a := range o.Actions {
			a.node, a.doc = nil, nil
		}
		if !reflect.DeepEqual(o, wantObs[i]) {
			t.Fatalf("unexpected observer %d; got\n%+v\nwant\n%+v", i, o, wantObs[i])
		}
	}

	// Every section differs from its default, so every key is proven read.
	def := reflect.ValueOf(Default()).Elem()
	rv := reflect.ValueOf(cfg).Elem()
	for _, f := range fieldsOf(rv.Type()) {
		if reflect.DeepEqual(rv.FieldByIndex(f.index).Interface(), def.FieldByIndex(f.index).Interface()) {
			t.Errorf("unexpected default value for %s in full.yaml", f.name)
		}
	}
}

func TestSeedRollbackSnippet(t *testing.T) {
	_, _, err := Parse("config.yaml", readFile(t, "testdata/seed_rollback.yaml"), env{}.lookup)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("unexpected error %v", err)
	}
	want := []string{
		"config.yaml:1:1: source is required: a mapping with dsn or dsn_env naming the database (see docs/configuration.md#source)",
		"config.yaml:2:3: `checkpoints` is a top-level setting, not an observer: move it out of `observers:` (see docs/configuration.md#feature-toggles)",
		"config.yaml:4:3: `concurrent_execution` is a top-level setting, not an observer: move it out of `observers:` (see docs/configuration.md#feature-toggles)",
	}
	if got := strings.Split(errs.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Fatalf("unexpected errors; got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	cfg, _, err := Parse("config.yaml", readFile(t, "testdata/seed_rollback_fixed.yaml"), env{"PGDSN": "host=db"}.lookup)
	if err != nil {
		t.Fatalf("unexpected error for the fixed snippet:\n%v", err)
	}
	if cfg.Checkpoints.Enabled || !cfg.ConcurrentExecution.Enabled {
		t.Fatalf("unexpected toggles; got %+v %+v", cfg.Checkpoints, cfg.ConcurrentExecution)
	}
}

// TestObserverNamedLikeASetting checks that a real observer may be named like
// a setting: only a body without observer keys is taken for a misplaced toggle.
func TestObserverNamedLikeASetting(t *testing.T) {
	cfg, _ := mustParse(t, src+"observers:\n  dlq:\n    entity: public.dlq_events\n    actions: [{type: log}]\n", nil)
	if cfg.Observers[0].Name != "dlq" {
		t.Fatalf("unexpected observers; got %+v", cfg.Observers[0])
	}
}

func TestWarnings(t *testing.T) {
	cases := []struct {
		name, src, pos, frag string
	}{
		{"no observers", src, "", "no observers"},
		{"open admin endpoint", obs + "admin: {listen: \":9187\"}\n", "c.yaml:8:17", `admin.listen: ":9187" is reachable from other hosts and admin.token_env is not set`},
		{"literal password", "source:\n  dsn: postgres://app:pw@db/app\n", "c.yaml:2:8", "the password is written in the file"},
		{"literal keyword password", "source:\n  dsn: host=db password=pw\n", "c.yaml:2:8", "the password is written in the file"},
		{"tables without manage", src + "  publication_tables: [t]\n", "c.yaml:3:23", "ignored because manage_publication is false"},
		{"entity that is no alias", src + "observers:\n  o:\n    entity: Order\n    actions: [{type: log}]\n", "c.yaml:5:13", `entity "Order" is not an alias under entities:`},
		{"failover without listener_id", obs + "failover: {enabled: true}\n", "c.yaml:8:1", "give every instance its own listener_id"},
		{"event larger than in-flight", obs + "pipeline: {max_in_flight_bytes: 1MiB}\n", "c.yaml:8:33", "smaller than source.max_event_bytes"},
		{"entity on CUSTOM", obs + "    event_type: CUSTOM\n    message_prefix: app\n", "c.yaml:5:13", "has no effect on CUSTOM messages"},
		{"token without listen", obs + "admin: {listen: \"\", token_env: T}\n", "c.yaml:8:32", "ignored because admin.listen is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, warns := mustParse(t, c.src, env{"T": "x"})
			for _, w := range warns {
				if (c.pos == "" || w.Pos.String() == c.pos) && strings.Contains(w.Msg, c.frag) {
					return
				}
			}
			t.Fatalf("unexpected warnings; got %v; want one at %s containing %q", warns, c.pos, c.frag)
		})
	}
	for _, ok := range []string{
		obs,
		obs + "admin: {listen: \"localhost:9187\"}\n",
		obs + "admin: {listen: \"[::1]:9187\"}\n",
		obs + "admin: {listen: \"\"}\n",
		"source:\n  dsn: postgres://app:${PGPASSWORD}@db/app\n" + obs[len(src):],
		"source:\n  dsn: host=db password='${PGPASSWORD}'\n" + obs[len(src):],
	} {
		if _, warns := mustParse(t, ok, env{"PGPASSWORD": "pw"}); len(warns) != 0 {
			t.Errorf("unexpected warnings for\n%s\ngot %v", ok, warns)
		}
	}
}

func TestAllErrorsReported(t *testing.T) {
	errs := parseErrors(t, "source:\n  slot: A\nlogging: {level: loud}\nobservers:\n  o:\n    entity: t\n    retires: 1\n", nil)
	want := []string{
		"c.yaml:1:1: source: dsn or dsn_env is required",
		"c.yaml:2:9: source.slot: invalid slot name",
		"c.yaml:3:18: logging.level: unknown level",
		"c.yaml:5:3: observers.o: actions is required",
		"c.yaml:7:5: observers.o: unknown key \"retires\"",
	}
	if len(errs) != len(want) {
		t.Fatalf("unexpected errors; got\n%v", (&Errors{List: errs}).Error())
	}
	for i, e := range errs {
		if !strings.HasPrefix(e.Error(), want[i]) {
			t.Errorf("unexpected error %d; got %q; want prefix %q", i, e.Error(), want[i])
		}
	}
}

func TestBOMAndCRLF(t *testing.T) {
	lf := obs + "    retires: 3\n"
	crlf := "\ufeff" + strings.ReplaceAll(lf, "\n", "\r\n")
	a, b := parseErrors(t, lf, nil), parseErrors(t, crlf, nil)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("unexpected errors for BOM+CRLF; got %v; want %v", b, a)
	}
	good := obs + "    condition: |\n      status == 'shipped'\n      && total > 0\n"
	cfg, _ := mustParse(t, "\ufeff"+strings.ReplaceAll(good, "\n", "\r\n"), nil)
	if got := cfg.Observers[0].Condition; got != "status == 'shipped'\n&& total > 0" {
		t.Fatalf("unexpected condition from a CRLF file; got %q", got)
	}
}

func TestFileSize(t *testing.T) {
	big := bytes.Repeat([]byte("# padding padding padding padding\n"), 10<<20/34+1)
	_, _, err := Parse("big.yaml", big, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "big.yaml:1:1: the file is 10.0 MiB, larger than the 1.0 MiB") {
		t.Fatalf("unexpected error for a 10 MB file; got %v", err)
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than the 1.0 MiB") {
		t.Fatalf("unexpected error loading a 10 MB file; got %v", err)
	}
}

func TestLoad(t *testing.T) {
	if _, _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unexpected error for a missing file; got %v", err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(obs), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(path)
	if err != nil || cfg.File != path || len(cfg.Observers) != 1 {
		t.Fatalf("unexpected result; got %+v, %v", cfg, err)
	}
	if err := os.WriteFile(path, []byte(obs+"    retires: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":8:5: ") {
		t.Fatalf("unexpected error; got %v; want one at %s:8:5", err, path)
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	cfg, _ := mustParse(t, src+`observers:
  a:
    entity: t
    actions: [{type: log}]
    retry: &r {max_attempts: 7, initial_delay: 1s}
  b:
    entity: t
    actions: [{type: log}]
    retry: *r
  c:
    entity: t
    actions: [{type: log}]
    retry:
      <<: *r
      max_attempts: 2
`, nil)
	got := []int{cfg.Observers[0].Retry.MaxAttempts, cfg.Observers[1].Retry.MaxAttempts, cfg.Observers[2].Retry.MaxAttempts}
	if !reflect.DeepEqual(got, []int{7, 7, 2}) || cfg.Observers[2].Retry.InitialDelay != time.Second {
		t.Fatalf("unexpected retries; got %v and %+v", got, cfg.Observers[2].Retry)
	}

	// An alias bomb is cut short, not expanded.
	bomb := src + "observers:\n  o:\n    entity: t\n    actions:\n      - type: log\n        params: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a0"
	for i := 1; i < 9; i++ {
		name := "a" + string(rune('0'+i))
		bomb += "        p" + name + ": &" + name + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = name
	}
	cfg, _ = mustParse(t, bomb, nil)
	var bombOpts struct {
		Params any `yaml:"params"`
		P1     any `yaml:"pa1"`
		P2     any `yaml:"pa2"`
		P3     any `yaml:"pa3"`
		P4     any `yaml:"pa4"`
		P5     any `yaml:"pa5"`
		P6     any `yaml:"pa6"`
		P7     any `yaml:"pa7"`
		P8     any `yaml:"pa8"`
	}
	err := cfg.Observers[0].Actions[0].Decode(&bombOpts)
	if err == nil || !strings.Contains(err.Error(), "expands to too many values") {
		t.Fatalf("unexpected error for an alias bomb; got %v", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
