package search

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

func cfgFor(es *esServer) Config {
	return Config{URL: configs.NewSecret(es.URL), Index: "orders-{{ event.table }}", Policy: egress.Policy{AllowedHosts: []string{"127.0.0.1"}}}
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(t.Context(), cfg, sinks.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var fastRetry = pipeline.RetryPolicy{MaxAttempts: 4, Strategy: pipeline.BackoffFixed, Initial: 10 * time.Millisecond}

// changes returns n events of op for keys 0..n-1, with ids after base.
func changes(op decoder.Op, n int, base lsn.LSN, status string) []*decoder.Event {
	evs := sinktest.Events(n, n)
	for _, ev := range evs {
		ev.Op = op
		ev.ID.Commit += base
		ev.LSN += base
		switch op {
		case decoder.OpDelete:
			ev.Old, ev.New = ev.Key, nil
		case decoder.OpUpdate:
			ev.New.Values[1] = json.RawMessage(fmt.Sprintf("%q", status))
		}
	}
	return evs
}

// TestIndexUpdateDelete: inserts, updates and deletes go through a real pipeline in
// bulk requests; the store ends as the rows are; a delete of a missing document
// counts as done.
func TestIndexUpdateDelete(t *testing.T) {
	es := newES(t)
	cfg := cfgFor(es)
	cfg.BatchSize = 20
	s := newSink(t, cfg)
	run := func(evs []*decoder.Event) {
		t.Helper()
		dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{BatchSize: 50, Retry: fastRetry})
		if l := dlq.Snapshot(); len(l) != 0 {
			t.Fatalf("unexpected dead letters: %d, first %v", len(l), l[0].Err)
		}
	}
	run(changes(decoder.OpInsert, 100, 0, ""))
	if n := es.count("orders-orders"); n != 100 {
		t.Fatalf("unexpected document count; got %d; want 100", n)
	}
	doc, ok := es.doc("orders-orders", "public.orders:42")
	if !ok || string(doc["status"]) != `"pending"` || string(doc["id"]) != "42" || string(doc["total"]) != "42.50" || len(doc) != 3 {
		t.Fatalf("unexpected document 42: %v", doc)
	}
	run(changes(decoder.OpUpdate, 50, 1<<20, "shipped"))
	doc, _ = es.doc("orders-orders", "public.orders:7")
	if string(doc["status"]) != `"shipped"` {
		t.Fatalf("unexpected document 7 after the update: %v", doc)
	}
	del := changes(decoder.OpDelete, 120, 2<<20, "") // 20 of them were never indexed
	run(del)
	if n := es.count("orders-orders"); n != 0 {
		t.Fatalf("unexpected documents left; got %d; want 0", n)
	}
	for _, q := range es.reqs() {
		if len(q.actions) > 20 || q.path != "/_bulk" || q.query.Get("filter_path") != filterPath ||
			q.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("unexpected bulk request: %s?%s %s with %d actions", q.path, q.query.Encode(), q.header.Get("Content-Type"), len(q.actions))
		}
	}
	if len(es.reqs()) >= 270 {
		t.Fatalf("unexpected request count %d: no batching", len(es.reqs()))
	}
}

// TestItemErrors: a 200 bulk response with per-item errors fails only those events:
// a mapping error goes to the dead-letter queue at once (class = the error type,
// no document value in the error), a rejected (429) and an unavailable (503) item
// are retried and indexed.
func TestItemErrors(t *testing.T) {
	es := newES(t)
	tries := map[string]int{}
	es.item = func(_ int, action, _, id string, doc map[string]json.RawMessage) (int, string) {
		tries[id]++
		switch {
		case id == "public.orders:3":
			return 400, "mapper_parsing_exception"
		case id == "public.orders:5" && tries[id] == 1:
			return 429, "es_rejected_execution_exception"
		case id == "public.orders:7" && tries[id] <= 2:
			return 503, "unavailable_shards_exception"
		}
		return 0, ""
	}
	s := newSink(t, cfgFor(es))
	evs := changes(decoder.OpInsert, 10, 0, "")
	evs[3].New.Values[1] = json.RawMessage(`"SECRET-ROW-VALUE"`)
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{BatchSize: 10, Retry: fastRetry})
	letters := dlq.Snapshot()
	if len(letters) != 1 || letters[0].Event != evs[3] || letters[0].Attempts != 1 || sinks.Class(letters[0].Err) != "mapper_parsing_exception" {
		t.Fatalf("unexpected dead letters: %+v", letters)
	}
	if strings.Contains(letters[0].Err.Error(), "SECRET") {
		t.Fatalf("unexpected row value in the error: %v", letters[0].Err)
	}
	if n := es.count("orders-orders"); n != 9 {
		t.Fatalf("unexpected document count; got %d; want 9", n)
	}
	if tries["public.orders:5"] != 2 || tries["public.orders:7"] != 3 || tries["public.orders:3"] != 1 {
		t.Fatalf("unexpected attempts per item: %v", tries)
	}
}

// TestRequestFaults: whole-request failures (a garbage 200, items that do not match
// the request, a 503, a truncated body) are transient for every event of the
// request; a 401 is permanent for all of them.
func TestRequestFaults(t *testing.T) {
	garbage := func(n int, w http.ResponseWriter) bool {
		switch n {
		case 1:
			io.WriteString(w, "<html>not json</html>")
		case 2:
			io.WriteString(w, `{"took":1,"errors":false,"items":[]}`) // no item for the actions
		case 3:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
		case 4:
			io.WriteString(w, `{"took":1,"errors":false,"items":[{"index":{"sta`)
		case 5:
			io.WriteString(w, `{"took":1,"items":[]}`) // no errors flag: not a bulk response
		default:
			return false
		}
		return true
	}
	es := newES(t)
	es.whole = garbage
	s := newSink(t, cfgFor(es))
	evs := changes(decoder.OpInsert, 5, 0, "")
	dlq := sinktest.Run(t, s, evs, sinktest.RunOptions{BatchSize: 5, Concurrency: 1,
		Retry: pipeline.RetryPolicy{MaxAttempts: 10, Strategy: pipeline.BackoffFixed, Initial: 5 * time.Millisecond}})
	if l := dlq.Snapshot(); len(l) != 0 {
		t.Fatalf("unexpected dead letters: %v", l[0].Err)
	}
	if n := es.count("orders-orders"); n != 5 {
		t.Fatalf("unexpected document count; got %d; want 5", n)
	}

	f := func(whole func(int, http.ResponseWriter) bool, class string, retry bool) {
		t.Helper()
		es := newES(t)
		es.whole = whole
		s := newSink(t, cfgFor(es))
		evs := changes(decoder.OpInsert, 3, 0, "")
		errs := make([]error, len(evs))
		s.DeliverBatch(t.Context(), evs, errs)
		for _, err := range errs {
			if sinks.Class(err) != class || pipeline.Retryable(err) != retry {
				t.Fatalf("unexpected error; got %v (class %s); want class %s retry %v", err, sinks.Class(err), class, retry)
			}
		}
	}
	f(func(_ int, w http.ResponseWriter) bool { return garbage(1, w) }, "malformed_response", true)
	f(func(_ int, w http.ResponseWriter) bool { return garbage(2, w) }, "malformed_response", true)
	f(func(_ int, w http.ResponseWriter) bool {
		io.WriteString(w, `{"errors":false,"items":[{"delete":{"status":200}},{"delete":{"status":200}},{"delete":{"status":200}}]}`)
		return true
	}, "malformed_response", true) // items for other actions
	f(func(_ int, w http.ResponseWriter) bool {
		io.WriteString(w, `{"errors":false,"items":[`+strings.Repeat(`{"index":{"status":201,"pad":"`+strings.Repeat("x", 4096)+`"}},`, 30)+`]}`)
		return true
	}, "malformed_response", true) // larger than the cap
	f(func(_ int, w http.ResponseWriter) bool {
		esError(w, 401, "security_exception", "missing authentication credentials")
		return true
	}, "http_401", false)
	f(func(_ int, w http.ResponseWriter) bool { esError(w, 413, "content_too_long", "too large"); return true }, "http_413", false)
	f(func(_ int, w http.ResponseWriter) bool {
		esError(w, 429, "circuit_breaking_exception", "busy")
		return true
	}, "http_429", true)
}

// TestTruncateAndMessages: events the action cannot map fail permanently on their
// own and are not sent.
func TestTruncateAndMessages(t *testing.T) {
	es := newES(t)
	s := newSink(t, cfgFor(es))
	evs := changes(decoder.OpInsert, 3, 0, "")
	evs[0].Op, evs[0].Key, evs[0].New = decoder.OpTruncate, nil, nil
	evs[1].Op, evs[1].Key, evs[1].New, evs[1].Message = decoder.OpMessage, nil, nil, &decoder.Message{Prefix: "x"}
	errs := make([]error, 3)
	s.DeliverBatch(t.Context(), evs, errs)
	if sinks.Class(errs[0]) != "truncate_unsupported" || pipeline.Retryable(errs[0]) ||
		!strings.Contains(errs[0].Error(), "truncate is not supported by the search action") {
		t.Fatalf("unexpected TRUNCATE result: %v", errs[0])
	}
	if sinks.Class(errs[1]) != "unsupported_op" || errs[2] != nil {
		t.Fatalf("unexpected results: %v", errs)
	}
	if q := es.reqs(); len(q) != 1 || len(q[0].actions) != 1 {
		t.Fatalf("unexpected requests: %+v", q)
	}
	// Nothing indexable: no request at all.
	if err := s.Deliver(t.Context(), evs[0]); sinks.Class(err) != "truncate_unsupported" || len(es.reqs()) != 1 {
		t.Fatalf("unexpected Deliver of a TRUNCATE: %v, %d requests", err, len(es.reqs()))
	}
}

func TestDocumentID(t *testing.T) {
	f := func(names []string, values []string, want string) {
		t.Helper()
		ev := &decoder.Event{Schema: "app", Table: "items"}
		if names != nil {
			ev.Key = &decoder.Row{Names: names}
			for _, v := range values {
				ev.Key.Values = append(ev.Key.Values, json.RawMessage(v))
			}
		}
		got, err := DocumentID(ev)
		if want == "" {
			if sinks.Class(err) != "no_document_id" {
				t.Fatalf("unexpected result without a key; got %q, %v", got, err)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("unexpected id; got %q, %v; want %q", got, err, want)
		}
	}
	f([]string{"id"}, []string{"42"}, "app.items:42")
	f([]string{"id"}, []string{`"a-b"`}, "app.items:a-b")
	f([]string{"order_id", "line"}, []string{"7", "3"}, "app.items:7,3")
	f([]string{"a", "b"}, []string{`"x,y"`, `"z\\w"`}, `app.items:x\,y,z\\w`)
	f([]string{"a", "b"}, []string{`"x"`, `",y"`}, `app.items:x,\,y`)
	f([]string{"id"}, []string{"12.50"}, "app.items:12.50")
	f([]string{"id"}, []string{`"\u00e9t\u00e9"`}, "app.items:été")
	f(nil, nil, "")
	f([]string{}, nil, "")
}

// TestTemplatesAndFields: id_template and the index template render per event; a
// rendered index name Elasticsearch would refuse is a permanent error; the event
// id is added when event_id_field is set; an UPDATE with unchanged TOAST columns is
// a partial update that keeps the indexed values.
func TestTemplatesAndFields(t *testing.T) {
	es := newES(t)
	cfg := cfgFor(es)
	cfg.Index = "{{ event.schema }}-{{ new.status }}"
	cfg.IDTemplate = "order-{{ key.id }}"
	cfg.EventIDField = "event_id"
	s := newSink(t, cfg)
	evs := changes(decoder.OpInsert, 3, 0, "")
	evs[1].New.Values[1] = json.RawMessage(`"Bad/Index"`)
	evs[2].New.Names = []string{"id", "status", "total", "event_id"}
	evs[2].New.Values = append(evs[2].New.Values, json.RawMessage(`"overwritten"`))
	errs := make([]error, 3)
	s.DeliverBatch(t.Context(), evs, errs)
	if errs[0] != nil || errs[2] != nil || sinks.Class(errs[1]) != "invalid_index" || strings.Contains(errs[1].Error(), "Bad") {
		t.Fatalf("unexpected results: %v", errs)
	}
	doc, ok := es.doc("public-pending", "order-0")
	if !ok || string(doc["event_id"]) != `"`+evs[0].ID.String()+`"` || len(doc) != 4 {
		t.Fatalf("unexpected document: %v", doc)
	}
	doc, _ = es.doc("public-pending", "order-2")
	if string(doc["event_id"]) != `"`+evs[2].ID.String()+`"` || len(doc) != 4 {
		t.Fatalf("unexpected document with an event_id column: %v", doc)
	}

	// Unchanged TOAST: the update keeps the indexed description.
	es2 := newES(t)
	s2 := newSink(t, cfgFor(es2))
	ins := changes(decoder.OpInsert, 1, 0, "")
	ins[0].New.Names = []string{"id", "status", "total", "description"}
	ins[0].New.Values = append(ins[0].New.Values, json.RawMessage(`"a long text"`))
	if err := s2.Deliver(t.Context(), ins[0]); err != nil {
		t.Fatal(err)
	}
	upd := changes(decoder.OpUpdate, 1, 1<<20, "shipped")
	upd[0].Unavailable = []string{"description"}
	if err := s2.Deliver(t.Context(), upd[0]); err != nil {
		t.Fatal(err)
	}
	doc, _ = es2.doc("orders-orders", "public.orders:0")
	if string(doc["status"]) != `"shipped"` || string(doc["description"]) != `"a long text"` {
		t.Fatalf("unexpected document after a partial update: %v", doc)
	}
	if q := es2.reqs(); q[1].actions[0] != "update" {
		t.Fatalf("unexpected action for an UPDATE with unavailable columns: %v", q[1].actions)
	}
}

func TestAuthAndPath(t *testing.T) {
	es := newES(t)
	cfg := cfgFor(es)
	cfg.URL = configs.NewSecret(es.URL + "/es-proxy/")
	cfg.Username, cfg.Password = configs.NewSecret("elastic"), configs.NewSecret("pa:ss")
	s := newSink(t, cfg)
	if err := s.Deliver(t.Context(), changes(decoder.OpInsert, 1, 0, "")[0]); err != nil {
		t.Fatal(err)
	}
	cfg.URL = configs.NewSecret(es.URL)
	cfg.Username, cfg.Password, cfg.APIKey = configs.Secret{}, configs.Secret{}, configs.NewSecret("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==")
	s2 := newSink(t, cfg)
	if err := s2.Deliver(t.Context(), changes(decoder.OpInsert, 1, 0, "")[0]); err != nil {
		t.Fatal(err)
	}
	q := es.reqs()
	if q[0].path != "/es-proxy/_bulk" || q[0].header.Get("Authorization") != "Basic ZWxhc3RpYzpwYTpzcw==" {
		t.Fatalf("unexpected first request: %s %q", q[0].path, q[0].header.Get("Authorization"))
	}
	if q[1].path != "/_bulk" || q[1].header.Get("Authorization") != "ApiKey "+cfg.APIKey.Value() {
		t.Fatalf("unexpected second request: %s %q", q[1].path, q[1].header.Get("Authorization"))
	}
}

func TestValidate(t *testing.T) {
	good := func() Config {
		return Config{URL: configs.NewSecret("https://search.example.com:9200"), Index: "orders"}
	}
	// The first argument names the row; a failure reports the line of its call.
	f := func(_ string, mod func(c *Config), key, msg string) {
		t.Helper()
		c := good()
		mod(&c)
		sinktest.WantKeyError(t, c.Validate(), key, msg)
	}
	f("defaults", func(c *Config) {}, "", "")
	f("missing url", func(c *Config) { c.URL = configs.NewSecret("") }, "url", "required")
	f("scheme", func(c *Config) { c.URL = configs.NewSecret("ftp://search.example.com") }, "url", "only http and https")
	f("private literal", func(c *Config) { c.URL = configs.NewSecret("http://10.0.0.5:9200") }, "url", "allowed_hosts")
	f("private allowed", func(c *Config) {
		c.URL = configs.NewSecret("http://10.0.0.5:9200")
		c.AllowedHosts = []string{"10.0.0.0/24"}
	}, "", "")
	f("credentials in url", func(c *Config) { c.URL = configs.NewSecret("https://elastic:pw@search.example.com") }, "url", "credentials")
	f("query in url", func(c *Config) { c.URL = configs.NewSecret("https://search.example.com/?pretty") }, "url", "query")
	f("missing index", func(c *Config) { c.Index = "" }, "index", "required")
	f("upper-case index", func(c *Config) { c.Index = "Orders" }, "index", "lower case")
	f("index with slash", func(c *Config) { c.Index = "a/b" }, "index", "cannot contain")
	f("index starting with _", func(c *Config) { c.Index = "_all" }, "index", "cannot start")
	f("index ..", func(c *Config) { c.Index = ".." }, "index", `".."`)
	f("index too long", func(c *Config) { c.Index = strings.Repeat("a", 256) }, "index", "longer")
	f("index template", func(c *Config) { c.Index = "orders-{{ event.table }}" }, "", "")
	f("index template error", func(c *Config) { c.Index = "orders-{{ event.table" }, "index", "unclosed")
	f("id template error", func(c *Config) { c.IDTemplate = "{{ }}" }, "id_template", "empty placeholder")
	f("api key and basic", func(c *Config) {
		c.APIKey, c.Username, c.Password = configs.NewSecret("k"), configs.NewSecret("u"), configs.NewSecret("p")
	}, "api_key_env", "either")
	f("username alone", func(c *Config) { c.Username = configs.NewSecret("u") }, "username_env", "together")
	f("batch size", func(c *Config) { c.BatchSize = MaxBatchSize + 1 }, "batch_size", "between")
	f("timeout", func(c *Config) { c.Timeout = -1 }, "timeout", "negative")
	f("event id field", func(c *Config) { c.EventIDField = "a\nb" }, "event_id_field", "control")
	c := good()
	c.Defaults()
	if err := c.Validate(); err != nil || c.Timeout != DefaultTimeout || c.BatchSize != DefaultBatchSize {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}
