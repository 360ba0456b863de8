package configs

import (
	"strings"
	"testing"
)

func TestExpandEnv(t *testing.T) {
	e := env{"A": "alpha", "EMPTY": "", "B": "b:-c"}
	f := func(in, want string, wantExpanded bool) {
		t.Helper()
		got, expanded, err := expandEnv(in, e.lookup)
		if err != nil {
			t.Fatalf("unexpected error for %q: %v", in, err)
		}
		if got != want || expanded != wantExpanded {
			t.Fatalf("unexpected expansion of %q; got %q (expanded %v); want %q (expanded %v)", in, got, expanded, want, wantExpanded)
		}
	}
	f("", "", false)
	f("plain", "plain", false)
	f("${A}", "alpha", true)
	f("x-${A}-${A}-y", "x-alpha-alpha-y", true)
	f("${UNSET:-fallback}", "fallback", true)
	f("${EMPTY:-fallback}", "fallback", true)
	f("${EMPTY}", "", true)
	f("${A:-fallback}", "alpha", true)
	f("${UNSET:-}", "", true)
	f("${UNSET:-a:-b}", "a:-b", true)
	f("${B}", "b:-c", true)
	f("$${A}", "${A}", false)
	f("$$${A}", "$${A}", false)
	f("cost: $5, $A, $", "cost: $5, $A, $", false)
	f("pa$$word", "pa$$word", false)

	bad := func(in, frag string) {
		t.Helper()
		_, _, err := expandEnv(in, e.lookup)
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Fatalf("unexpected error for %q; got %v; want one containing %q", in, err, frag)
		}
	}
	bad("${UNSET}", "environment variable UNSET is not set")
	bad("${A", `unterminated "${"`)
	bad("${}", `invalid environment variable reference "${}"`)
	bad("${A-B}", `invalid environment variable reference "${A-B}"`)
	bad("${9A}", "not starting with a digit")
}

func TestEnvInConfig(t *testing.T) {
	e := env{"SLOT": "orders", "SECRET": "hunter2 canary/:@%", "MULTI": "a\n\n\nb", "WORKERS": "16", "ON": "false"}

	cfg, _ := mustParse(t, "source:\n  dsn: postgres://app@db/app\n  slot: ${SLOT}\n"+obs[len(src):]+"    condition: \"$${X} == 1\"\n", e)
	if cfg.Source.Slot != "orders" || cfg.Observers[0].Condition != "${X} == 1" {
		t.Fatalf("unexpected values; got %q and %q", cfg.Source.Slot, cfg.Observers[0].Condition)
	}
	cfg, _ = mustParse(t, src+"concurrent_execution: {max_concurrency: \"${WORKERS}\", enabled: \"${ON}\"}\ncaching: {max_bytes: \"${SIZE:-32MiB}\"}\n", e)
	if cfg.ConcurrentExecution.MaxConcurrency != 16 || cfg.ConcurrentExecution.Enabled || cfg.Caching.MaxBytes != 32<<20 {
		t.Fatalf("unexpected typed values from the environment; got %+v %+v", cfg.ConcurrentExecution, cfg.Caching)
	}

	// "$${" keeps a literal "${", which the publication rule then rejects:
	// the error shows what was written.
	errs := parseErrors(t, src+"  publication: \"$${X}\"\n", e)
	if !hasError(errs, "c.yaml:3:16", `invalid publication name "${X}"`) {
		t.Fatalf("unexpected errors: %v", errs)
	}

	// Expansion happens per scalar after parsing: a value with newlines does
	// not move the positions of what follows.
	errs = parseErrors(t, src+"listener_id: ${MULTI}\nlogging: {level: loud}\n", e)
	if !hasError(errs, "c.yaml:4:18", "logging.level") {
		t.Fatalf("unexpected errors: %v", errs)
	}

	// Errors about values from the environment name the variable, never the value.
	for _, s := range []string{
		src + "  slot: ${SECRET}\n",
		src + "listener_id: \"${SECRET}\"\n",
		src + "logging: {level: \"${SECRET}\"}\n",
		src + "pipeline: {batch_size: \"${SECRET}\"}\n",
		src + "  status_interval: \"${SECRET}\"\n",
		src + "caching: {max_bytes: \"${SECRET}\"}\n",
		src + "replay_window: \"${SECRET}\"\n",
		obs + "    on_failure: ${SECRET}\n",
		src + "observers:\n  o:\n    entity: ${SECRET}!\n    actions: [{type: log}]\n",
		obs + "        name: ${SECRET}!\n",
		src + "observers:\n  o:\n    entity: t\n    actions: [{type: \"${SECRET}!\"}]\n",
		obs + "    retry: {backoff_strategy: \"${SECRET}\"}\n",
		obs + "    event_type: \"${SECRET}\"\n",
	} {
		errs := parseErrors(t, s, e)
		all := (&Errors{List: errs}).Error()
		if strings.Contains(all, "hunter2") || !strings.Contains(all, "${SECRET}") {
			t.Errorf("unexpected errors for\n%s\ngot\n%s\nwant the variable named and its value absent", s, all)
		}
	}

	// Keys are never expanded.
	errs = parseErrors(t, src+"${SLOT}: 1\n", e)
	if !hasError(errs, "c.yaml:3:1", `unknown key "${SLOT}"`) {
		t.Fatalf("unexpected errors: %v", errs)
	}
}

func TestEnvSecret(t *testing.T) {
	e := env{"PGDSN": "postgres://app:pw@db/app", "EMPTY": ""}
	cfg, _ := mustParse(t, "source:\n  dsn_env: PGDSN\n", e)
	if dsn, err := cfg.DSN(); err != nil || dsn != "postgres://app:pw@db/app" {
		t.Fatalf("unexpected DSN; got %q, %v", dsn, err)
	}
	if cfg.Source.DSN.Env() != "PGDSN" {
		t.Fatalf("unexpected variable name; got %q", cfg.Source.DSN.Env())
	}
	errs := parseErrors(t, "source:\n  dsn_env: EMPTY\n", e)
	if !hasError(errs, "c.yaml:2:12", "environment variable EMPTY is empty") {
		t.Fatalf("unexpected errors: %v", errs)
	}
	errs = parseErrors(t, "source:\n  dsn_env: \"\"\n", e)
	if !hasError(errs, "c.yaml:2:12", "source.dsn_env: empty") {
		t.Fatalf("unexpected errors: %v", errs)
	}
	errs = parseErrors(t, "source:\n  dsn_env: postgres://app:hunter2@db/app\n", e)
	if all := (&Errors{List: errs}).Error(); strings.Contains(all, "hunter2") || !hasError(errs, "c.yaml:2:12", "is not an environment variable name") {
		t.Fatalf("unexpected errors: %v", all)
	}
}
