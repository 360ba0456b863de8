package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observers/sinks"
)

// transientCodes are the Redis error codes of conditions that heal by themselves or
// by an operator's fix that needs no change to the event: a later attempt of the same
// command can succeed. The class is the code in lower case.
var transientCodes = map[string]bool{
	"LOADING":     true, // the server is loading its dataset after a restart
	"BUSY":        true, // a script or function is running; it ends or is killed
	"TRYAGAIN":    true, // a multi-key command during a slot migration
	"CLUSTERDOWN": true, // the cluster is failing over
	"MASTERDOWN":  true, // a replica lost its primary (replica-serve-stale-data no)
	"READONLY":    true, // we reached a replica; a failover or DNS change heals it
	"OOM":         true, // maxmemory reached with noeviction; memory frees up (expiry, operator)
	"MISCONF":     true, // writes refused after a failed RDB save; heals when the disk does
	"NOREPLICAS":  true, // min-replicas-to-write not met; heals when replicas return
}

// permanentCodes name the classes of error codes that the same command will always
// get again. Any other code is permanent with class redis_error: the server answered,
// so the command reached it and was refused.
var permanentCodes = map[string]string{
	"WRONGTYPE": "wrongtype", // the key holds another type (e.g. a string where a stream belongs)
	"NOSCRIPT":  "noscript",
	"ERR":       "redis_err", // syntax, unknown command, invalid argument
	"NOAUTH":    "auth",      // credentials are configuration: fix and redeliver from the DLQ
	"WRONGPASS": "auth",
	"NOPERM":    "auth",    // the ACL user may not run the command or touch the key
	"MOVED":     "cluster", // a Redis Cluster node; this sink speaks to one server
	"ASK":       "cluster",
	"CROSSSLOT": "cluster",
}

// Classify turns an error of the Redis client into a sinks.Error that says whether a
// retry can help (see the classification table in docs/actions/cache.md). Context
// cancellation is returned as it is (the pipeline is stopping); nil stays nil.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		if goredis.IsMaxClientsError(rerr) {
			return sinks.Transient("maxclients", err, 0)
		}
		code := errorCode(rerr.Error())
		if transientCodes[code] {
			return sinks.Transient(strings.ToLower(code), err, 0)
		}
		if class, ok := permanentCodes[code]; ok {
			return sinks.Permanent(class, err)
		}
		return sinks.Permanent("redis_error", err)
	}
	var te interface{ Timeout() bool }
	var cv *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, goredis.ErrPoolTimeout),
		errors.As(err, &te) && te.Timeout():
		return sinks.Transient("timeout", err, 0)
	case errors.Is(err, goredis.ErrClosed):
		return sinks.Transient("closed", err, 0)
	case errors.As(err, &cv):
		// The certificate may be renewed, or the CA bundle fixed: no event is at fault.
		return sinks.Transient("tls", err, 0)
	}
	// Refused, reset, EOF, TLS and DNS failures: the network or the server's
	// availability, which heal.
	return sinks.Transient("connection", err, 0)
}

// errorCode returns the first word of a Redis error reply: by protocol convention
// the error's kind ("WRONGTYPE Operation against a key holding the wrong kind of
// value" → WRONGTYPE).
func errorCode(msg string) string {
	if i := strings.IndexByte(msg, ' '); i >= 0 {
		msg = msg[:i]
	}
	return msg
}
