package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Error is an error with an HTTP status and a machine-readable code, written as
// {"error": Msg, "code": Code, ...Detail}. Implementations of the interfaces return it
// to choose the status; any other error is a 500.
type Error struct {
	Status int
	Code   string
	Msg    string
	Detail map[string]string
}

// Error returns the message.
func (e *Error) Error() string { return e.Msg }

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error  string            `json:"error"`
	Code   string            `json:"code"`
	Detail map[string]string `json:"detail,omitempty"`
}

// ReplayRequest is the body of POST /replay: positions as "X/Y" text.
type ReplayRequest struct {
	FromLSN  string `json:"from_lsn"`
	ToLSN    string `json:"to_lsn,omitempty"`
	Observer string `json:"observer,omitempty"`
	// RequireOldImages refuses a replay whose observers need old values the
	// replayed changes cannot carry (instead of only warning).
	RequireOldImages bool `json:"require_old_images,omitempty"`
	// From and To are FromLSN and ToLSN parsed (To is 0 when ToLSN is empty).
	From lsn.LSN `json:"-"`
	To   lsn.LSN `json:"-"`
}

// SnapshotRequest is the body of POST /snapshots: the table ("schema.table"), an
// optional SQL condition on its rows and an optional observer to deliver to.
type SnapshotRequest struct {
	Table    string `json:"table"`
	Where    string `json:"where,omitempty"`
	Observer string `json:"observer,omitempty"`
}

// MaxHistory bounds ?history=N.
const MaxHistory = 10_000

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	o := s.opts
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready != nil {
			if err := o.Ready.Ready(); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	auth := func(pattern string, f http.HandlerFunc) { mux.Handle(pattern, s.authorize(f)) }
	auth("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if o.Metrics != nil {
			o.Metrics.WritePrometheus(w)
		}
		metrics.WriteProcessMetrics(w)
	})
	auth("GET /status", func(w http.ResponseWriter, r *http.Request) {
		if o.Status == nil {
			writeError(w, notFound("status"))
			return
		}
		doc, err := o.Status.Status(r.Context())
		s.reply(w, doc, err)
	})
	auth("GET /debug/events", func(w http.ResponseWriter, r *http.Request) {
		if o.Events == nil {
			writeError(w, notFound("the event history"))
			return
		}
		n := 20
		if v := r.URL.Query().Get("history"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > MaxHistory {
				writeError(w, badRequest("history must be a number from 1 to "+strconv.Itoa(MaxHistory)))
				return
			}
		}
		writeJSON(w, http.StatusOK, o.Events.RecentEvents(n))
	})
	auth("GET /debug/events/{id}", func(w http.ResponseWriter, r *http.Request) {
		if o.Events == nil {
			writeError(w, notFound("the event history"))
			return
		}
		id := r.PathValue("id")
		if _, err := lsn.ParsePosition(id); err != nil {
			writeError(w, badRequest("event ids look like 0/16B3748:3: "+err.Error()))
			return
		}
		ev, ok := o.Events.FindEvent(id)
		if !ok {
			writeError(w, &Error{Status: http.StatusNotFound, Code: "event_not_remembered",
				Msg: "event " + id + " is not in the service's recent event history"})
			return
		}
		writeJSON(w, http.StatusOK, ev)
	})
	// Go's runtime profiles (net/http/pprof), for measuring the service where it runs:
	// /debug/pprof/ lists them, /debug/pprof/profile?seconds=N takes a CPU profile,
	// /debug/pprof/trace?seconds=N an execution trace, /debug/pprof/heap and the other
	// named profiles a snapshot. The command line is not served (it may hold secrets).
	auth("GET /debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/cmdline" {
			writeError(w, notFound("the command line"))
			return
		}
		pprof.Index(w, r)
	})
	auth("GET /debug/pprof/profile", pprof.Profile)
	auth("GET /debug/pprof/trace", pprof.Trace)
	auth("GET /debug/pprof/symbol", pprof.Symbol)
	auth("POST /debug/pprof/symbol", pprof.Symbol)
	auth("GET /cache/stats", func(w http.ResponseWriter, _ *http.Request) {
		if o.Cache == nil {
			writeError(w, notFound("cache statistics"))
			return
		}
		writeJSON(w, http.StatusOK, o.Cache.CacheStats())
	})
	auth("POST /replay", func(w http.ResponseWriter, r *http.Request) {
		if o.Replay == nil {
			writeError(w, notFound("replay"))
			return
		}
		req, err := decodeReplay(r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		res, err := o.Replay.Replay(r.Context(), req)
		s.reply(w, res, err)
	})
	s.snapshotRoutes(auth)
	return mux
}

func (s *Server) snapshotRoutes(auth func(string, http.HandlerFunc)) {
	o := s.opts
	available := func(w http.ResponseWriter) bool {
		if o.Snapshots == nil {
			writeError(w, notFound("snapshots"))
			return false
		}
		return true
	}
	id := func(w http.ResponseWriter, r *http.Request) (int64, bool) {
		n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || n < 1 {
			writeError(w, badRequest("snapshot ids are positive numbers"))
			return 0, false
		}
		return n, true
	}
	auth("POST /snapshots", func(w http.ResponseWriter, r *http.Request) {
		if !available(w) {
			return
		}
		var req SnapshotRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.Table == "" {
			msg := "snapshot: the body must be {\"table\": \"schema.table\", \"where\": \"SQL condition\", \"observer\": \"name\"}"
			if err != nil {
				msg += ": " + err.Error()
			}
			writeError(w, badRequest(msg))
			return
		}
		res, err := o.Snapshots.StartSnapshot(r.Context(), req)
		s.reply(w, res, err)
	})
	auth("GET /snapshots", func(w http.ResponseWriter, r *http.Request) {
		if !available(w) {
			return
		}
		res, err := o.Snapshots.Snapshots(r.Context())
		s.reply(w, res, err)
	})
	auth("GET /snapshots/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !available(w) {
			return
		}
		if n, ok := id(w, r); ok {
			res, err := o.Snapshots.Snapshot(r.Context(), n)
			s.reply(w, res, err)
		}
	})
	auth("POST /snapshots/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if !available(w) {
			return
		}
		if n, ok := id(w, r); ok {
			res, err := o.Snapshots.CancelSnapshot(r.Context(), n)
			s.reply(w, res, err)
		}
	})
}

func decodeReplay(body io.Reader) (ReplayRequest, error) {
	var req ReplayRequest
	dec := json.NewDecoder(io.LimitReader(body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, badRequest("replay: the body must be {\"from_lsn\": \"X/Y\", \"to_lsn\": \"X/Y\", \"observer\": \"name\", \"require_old_images\": false}: " + err.Error())
	}
	var err error
	if req.From, err = lsn.Parse(req.FromLSN); err != nil {
		return req, badRequest("replay: from_lsn: " + err.Error())
	}
	if req.ToLSN != "" {
		if req.To, err = lsn.Parse(req.ToLSN); err != nil {
			return req, badRequest("replay: to_lsn: " + err.Error())
		}
	}
	return req, nil
}

// reply writes doc, or err as an error response (logged when it is a server error).
func (s *Server) reply(w http.ResponseWriter, doc any, err error) {
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			s.opts.Logger.Error().Err(err).Msg("admin request failed")
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

func notFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_available", Msg: what + " is not available in this service"}
}

func badRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: msg}
}

func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: err.Error()}
	}
	writeJSON(w, e.Status, ErrorBody{Error: e.Msg, Code: e.Code, Detail: e.Detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
