package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/fraiseql/fraiseql-observers/sinks"
)

// bulkResponse is the part of a _bulk response the sink reads: items are in request
// order, each an object with one key, the action.
type bulkResponse struct {
	Errors *bool                 `json:"errors"`
	Items  []map[string]bulkItem `json:"items"`
}

type bulkItem struct {
	Status int    `json:"status"`
	Result string `json:"result"`
	Error  *struct {
		Type string `json:"type"`
	} `json:"error"`
}

// errMalformed marks a response the sink cannot match to its request.
var errMalformed = errors.New("malformed bulk response")

// parseItems returns one outcome per action sent, in order:
//
//	2xx                                    delivered
//	404 on delete                          delivered (the document is already gone)
//	429, 5xx                               transient, class = the item's error type
//	other 4xx (mapper_parsing_exception)   permanent, class = the item's error type
//	anything else                          transient (invalid_item_status)
//
// A body that is not a bulk response, or whose items do not match the actions sent
// one for one, is an error for the whole request (errMalformed).
func parseItems(body []byte, actions []string) ([]error, error) {
	var r bulkResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, jsonProblem(err))
	}
	if r.Errors == nil || len(r.Items) != len(actions) {
		return nil, fmt.Errorf("%w: %d items for %d actions", errMalformed, len(r.Items), len(actions))
	}
	out := make([]error, len(actions))
	for i, m := range r.Items {
		it, ok := m[actions[i]]
		if len(m) != 1 || !ok {
			return nil, fmt.Errorf("%w: item %d is not the result of a %s action", errMalformed, i, actions[i])
		}
		out[i] = itemError(actions[i], it)
	}
	return out, nil
}

func itemError(action string, it bulkItem) error {
	st := it.Status
	if st >= 200 && st < 300 || action == actionDelete && st == 404 {
		return nil
	}
	class := "http_" + strconv.Itoa(st)
	if it.Error != nil && safeClass(it.Error.Type) {
		class = it.Error.Type
	}
	// The error's reason is left out: Elasticsearch quotes document values in it.
	err := fmt.Errorf("bulk %s item: status %d %s", action, st, class)
	switch {
	case st == 429 || st >= 500 && st < 600:
		return sinks.Transient(class, err, 0)
	case st >= 400 && st < 500:
		return sinks.Permanent(class, err)
	}
	return sinks.Transient("invalid_item_status", err, 0)
}

// safeClass reports whether an error type can serve as a class: short, lower case
// letters, digits and underscores, as Elasticsearch's exception names are.
func safeClass(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// jsonProblem describes a JSON decoding error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "invalid JSON at offset " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "unexpected " + te.Value + " at " + te.Field
	}
	return "invalid JSON"
}
