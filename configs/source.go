package configs

import (
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DSN returns the connection string: source.dsn, or the value of the variable
// source.dsn_env names. Never log it; log RedactDSN(dsn). For a configuration
// loaded with Options.DeferEnv whose variable was not set, the error is a
// positioned *Errors naming it.
func (c *Config) DSN() (string, error) {
	if v := c.Source.DSN.Value(); v != "" {
		return v, nil
	}
	if err := c.Need("source.dsn"); err != nil {
		return "", err
	}
	return "", errors.New("source: no dsn or dsn_env")
}

// validateSource checks the source section.
func (l *loader) validateSource() {
	s := &l.cfg.Source
	sourcePos, present := l.sections["source"]
	if !present {
		l.errorf(l.start, "source is required: a mapping with dsn or dsn_env naming the database (see docs/configuration.md#source)")
		return
	}
	at := func(ptr any) Pos { return l.d.where(ptr, sourcePos) }
	fp, written := l.d.pos[&s.DSN]
	switch {
	case l.d.conflict(&s.DSN) != nil:
		l.errorf(l.d.conflict(&s.DSN).envKey, "source: give either dsn or dsn_env, not both")
	case !written:
		l.errorf(sourcePos, "source: dsn or dsn_env is required (dsn_env: PGDSN reads the connection string from that environment variable)")
	case !fp.ok:
	case fp.env && s.DSN.Env() == "":
		l.errorf(at(&s.DSN), "source.dsn_env: empty: name the environment variable that holds the connection string")
	case fp.env:
		l.checkDSN("source.dsn_env ("+s.DSN.Env()+")", s.DSN.Value(), at(&s.DSN))
	default:
		l.checkDSN("source.dsn", s.DSN.Value(), at(&s.DSN))
		if literalPassword(fp.raw, fp.expanded, s.DSN.Value()) {
			l.warnf(at(&s.DSN), "source.dsn: the password is written in the file: prefer dsn_env, a ${VAR} reference, or a .pgpass file")
		}
	}

	if err := checkSlotName(s.Slot); err != nil {
		l.errorf(at(&s.Slot), "source.slot: invalid slot name %s: %v", l.quote(&s.Slot), err)
	}
	if err := checkIdentifier(s.Publication); err != nil {
		l.errorf(at(&s.Publication), "source.publication: invalid publication name %s: %v", l.quote(&s.Publication), err)
	}
	switch {
	case s.ManagePublication && len(s.PublicationTables) == 0:
		l.errorf(at(&s.ManagePublication), "source.publication_tables: required when manage_publication is true: the tables the publication is created for")
	case !s.ManagePublication && len(s.PublicationTables) > 0:
		l.warnf(at(&s.PublicationTables), "source.publication_tables: ignored because manage_publication is false")
	}
	l.positive(&s.StatusInterval, "source.status_interval", sourcePos)
	if s.StatusInterval > time.Minute {
		l.errorf(at(&s.StatusInterval), "source.status_interval: must be at most 60s (wal_sender_timeout is 60s by default), got %s", s.StatusInterval)
	}
	if l.notNegative(&s.ReceiveTimeout, "source.receive_timeout", sourcePos) && s.ReceiveTimeout != 0 && s.ReceiveTimeout <= s.StatusInterval {
		l.errorf(at(&s.ReceiveTimeout), "source.receive_timeout: must be longer than status_interval (%s), whose updates ask the server for a reply, got %s", s.StatusInterval, s.ReceiveTimeout)
	}
	l.positive(&s.ConnectTimeout, "source.connect_timeout", sourcePos)
	l.positive(&s.Reconnect.InitialDelay, "source.reconnect.initial_delay", sourcePos)
	if l.positive(&s.Reconnect.MaxDelay, "source.reconnect.max_delay", sourcePos) && s.Reconnect.MaxDelay < s.Reconnect.InitialDelay {
		l.errorf(at(&s.Reconnect.MaxDelay), "source.reconnect.max_delay: must be at least initial_delay (%s), got %s", s.Reconnect.InitialDelay, s.Reconnect.MaxDelay)
	}
	l.notNegative(&s.HeartbeatInterval, "source.heartbeat_interval", sourcePos)
}

// checkDSN checks the shape of a connection string without connecting. Its
// errors show the DSN only redacted.
func (l *loader) checkDSN(key, dsn string, pos Pos) {
	if strings.TrimSpace(dsn) == "" {
		l.errorf(pos, "%s: the connection string is empty", key)
		return
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		scheme := strings.ToLower(dsn[:i])
		if scheme != "postgres" && scheme != "postgresql" {
			l.errorf(pos, "%s: a connection URL starts with postgres:// or postgresql://, got %q", key, RedactDSN(dsn))
			return
		}
		// Do not show url.Parse's error: it quotes the URL, password included.
		if _, err := url.Parse(dsn); err != nil {
			l.errorf(pos, "%s: %q is not a valid connection URL: percent-encode special characters (@ : / %% ? #) in the user name and password", key, RedactDSN(dsn))
			return
		}
		l.parseDSN(key, dsn, pos)
		return
	}
	var removed []string
	if _, ok := redactKeywordValue(dsn, &removed); !ok || !strings.Contains(dsn, "=") {
		l.errorf(pos, "%s: %q is neither a postgres:// URL nor keyword=value pairs (host=... dbname=...): quote values with spaces in single quotes", key, RedactDSN(dsn))
		return
	}
	l.parseDSN(key, dsn, pos)
}

// parseDSN parses dsn with the parser start uses (pgx.ParseConfig), offline: it
// reads PG* environment variables and files the DSN names (sslrootcert, a
// passfile), and connects to nothing.
func (l *loader) parseDSN(key, dsn string, pos Pos) {
	if err := CheckConnString(dsn); err != nil {
		l.errorf(pos, "%s: %q cannot be used: %v", key, RedactDSN(dsn), err)
	}
}

// CheckConnString parses dsn as start does (pgx.ParseConfig, which also applies
// PG* environment variables), without connecting. Its error says what is wrong
// but never holds the DSN's password.
func CheckConnString(dsn string) error {
	_, err := pgx.ParseConfig(dsn)
	if err == nil {
		return nil
	}
	msg := "it cannot be parsed"
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// Its message without the connection string it quotes.
		bare := *pe
		bare.ConnString = ""
		msg = strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	}
	// pgx's messages quote parts of the DSN (a database name, a host), not its
	// password; replace it anyway should it appear (not when it is too short to
	// tell from other text).
	_, removed := redactDSN(dsn)
	for _, secret := range removed {
		for _, s := range []string{secret, strings.Trim(secret, "'"), unescapeURL(secret)} {
			if len(s) >= 3 {
				msg = strings.ReplaceAll(msg, s, redactedPassword)
			}
		}
	}
	return errors.New(msg)
}

// unescapeURL percent-decodes s, or returns it as it is.
func unescapeURL(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// literalPassword reports whether a DSN written in the file (raw, before
// ${VAR} expansion) holds a password that is not a ${VAR} reference.
func literalPassword(raw string, expanded bool, dsn string) bool {
	if !expanded {
		raw = dsn
	}
	_, removed := redactDSN(raw)
	for _, p := range removed {
		p = strings.Trim(p, "'")
		if p != "" && !strings.HasPrefix(p, "${") {
			return true
		}
	}
	return false
}
