package search

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// esServer is a real HTTP server speaking the documented _bulk protocol of
// Elasticsearch/OpenSearch: an NDJSON body of action lines ({"index"|"create"|
// "update"|"delete": {"_index", "_id", ...}}), each index/create/update followed by a
// source line, the body ending with a newline; the answer is 200 with "errors" and
// one item per action in request order ({"<action>": {"_index", "_id", "status",
// "result", "error": {"type", "reason"}}}), deletes of missing documents answering
// 404 "not_found". It keeps the documents in memory. It does not apply filter_path
// (it answers the full items, which the sink must accept).
type esServer struct {
	*httptest.Server
	mu       sync.Mutex
	docs     map[string]map[string]map[string]json.RawMessage // index → id → document
	requests []esRequest
	// item, if set, may fail one action: it returns a status and error type, or 0.
	item func(n int, action, index, id string, doc map[string]json.RawMessage) (int, string)
	// whole, if set, may answer request number n (from 1) itself.
	whole func(n int, w http.ResponseWriter) bool
}

type esRequest struct {
	path    string
	query   url.Values
	header  http.Header
	actions []string
	ids     []string
}

func newES(t *testing.T) *esServer {
	t.Helper()
	s := &esServer{docs: map[string]map[string]map[string]json.RawMessage{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func esError(w http.ResponseWriter, status int, typ, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "reason": reason}, "status": status})
}

func (s *esServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	req := esRequest{path: r.URL.Path, query: r.URL.Query(), header: r.Header.Clone()}
	s.requests = append(s.requests, req)
	n := len(s.requests)
	if s.whole != nil && s.whole(n, w) {
		return
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/_bulk") {
		esError(w, 405, "method_not_allowed", "expected POST /_bulk")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" && ct != "application/json" {
		esError(w, 406, "media_type_header_exception", "Content-Type header ["+ct+"] is not supported")
		return
	}
	if len(body) == 0 || body[len(body)-1] != '\n' {
		esError(w, 400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
		return
	}
	var items []map[string]any
	errorsSeen := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var line map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || len(line) != 1 {
			esError(w, 400, "x_content_parse_exception", "malformed action/metadata line")
			return
		}
		var action, index, id string
		for a, m := range line {
			action, index, id = a, m.Index, m.ID
		}
		var source map[string]json.RawMessage
		switch action {
		case "index", "create", "update":
			if !sc.Scan() {
				esError(w, 400, "illegal_argument_exception", "action requires a source line")
				return
			}
			if err := json.Unmarshal(sc.Bytes(), &source); err != nil {
				esError(w, 400, "x_content_parse_exception", "malformed source line")
				return
			}
		case "delete":
		default:
			esError(w, 400, "illegal_argument_exception", "Malformed action/metadata line, expected one of [create, delete, index, update]")
			return
		}
		req.actions = append(req.actions, action)
		req.ids = append(req.ids, id)
		item := map[string]any{"_index": index, "_id": id, "_version": 1}
		var status int
		var result, errType string
		if s.item != nil {
			status, errType = s.item(n, action, index, id, source)
		}
		if status == 0 { // a failed item changes nothing
			status, result, errType = s.apply(action, index, id, source)
		}
		item["status"] = status
		if errType != "" {
			errorsSeen = errorsSeen || status != 404 || action != "delete"
			// Like Elasticsearch, the reason quotes the document's value.
			item["error"] = map[string]any{"type": errType, "reason": fmt.Sprintf("failed to parse field; preview of value: %s", source["status"])}
		}
		if result != "" {
			item["result"] = result
		}
		items = append(items, map[string]any{action: item})
	}
	s.requests[n-1] = req
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": errorsSeen, "items": items})
}

// apply applies one action to the store.
func (s *esServer) apply(action, index, id string, source map[string]json.RawMessage) (status int, result, errType string) {
	docs := s.docs[index]
	if docs == nil {
		docs = map[string]map[string]json.RawMessage{}
		s.docs[index] = docs
	}
	old, exists := docs[id]
	switch action {
	case "index":
		docs[id] = source
		if exists {
			return 200, "updated", ""
		}
		return 201, "created", ""
	case "create":
		if exists {
			return 409, "", "version_conflict_engine_exception"
		}
		docs[id] = source
		return 201, "created", ""
	case "update":
		var doc map[string]json.RawMessage
		json.Unmarshal(source["doc"], &doc)
		if !exists {
			if string(source["doc_as_upsert"]) != "true" {
				return 404, "", "document_missing_exception"
			}
			docs[id] = doc
			return 201, "created", ""
		}
		for k, v := range doc {
			old[k] = v
		}
		return 200, "updated", ""
	case "delete":
		if !exists {
			return 404, "not_found", ""
		}
		delete(docs, id)
		return 200, "deleted", ""
	}
	return 400, "", "illegal_argument_exception"
}

func (s *esServer) doc(index, id string) (map[string]json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[index][id]
	return d, ok
}

func (s *esServer) count(index string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.docs[index])
}

func (s *esServer) reqs() []esRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]esRequest(nil), s.requests...)
}
