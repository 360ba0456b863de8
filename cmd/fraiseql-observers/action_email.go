package main

import (
	"errors"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks/email"
)

func init() { actionBuilders["email"] = buildEmail }

// emailAction is the YAML shape of a `type: email` action (docs/actions/email.md).
type emailAction struct {
	To              any       `yaml:"to"` // a string or a list of strings
	ToTemplate      string    `yaml:"to_template"`
	Subject         string    `yaml:"subject"`
	SubjectTemplate string    `yaml:"subject_template"`
	BodyTemplate    string    `yaml:"body_template"`
	ReplyTo         string    `yaml:"reply_to"`
	SMTP            emailSMTP `yaml:"smtp"`
}

// emailSMTP is the action's smtp block. Credentials come only from the environment.
type emailSMTP struct {
	Host        string         `yaml:"host"`
	Port        int            `yaml:"port"`
	From        string         `yaml:"from"`
	TLS         string         `yaml:"tls"`
	CAFile      string         `yaml:"ca_file"`
	UsernameEnv configs.EnvRef `yaml:"username_env"`
	PasswordEnv configs.EnvRef `yaml:"password_env"`
	HeloName    string         `yaml:"helo_name"`
	Timeout     time.Duration  `yaml:"timeout"`
}

func buildEmail(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var y emailAction
	if err := a.Decode(&y); err != nil {
		return nil, err
	}
	if !a.Has("smtp") {
		return nil, a.Errorf("smtp is required: a mapping with host, from and optionally port, tls, username_env, password_env")
	}
	cfg := email.Config{
		Host:            y.SMTP.Host,
		Port:            y.SMTP.Port,
		TLS:             y.SMTP.TLS,
		CAFile:          y.SMTP.CAFile,
		Username:        y.SMTP.UsernameEnv.Value(),
		Password:        y.SMTP.PasswordEnv.Value(),
		HeloName:        y.SMTP.HeloName,
		Timeout:         y.SMTP.Timeout,
		From:            y.SMTP.From,
		ToTemplate:      y.ToTemplate,
		Subject:         y.Subject,
		SubjectTemplate: y.SubjectTemplate,
		BodyTemplate:    y.BodyTemplate,
		ReplyTo:         y.ReplyTo,
		ActionID:        a.ID,
	}
	switch to := y.To.(type) {
	case nil:
	case string:
		cfg.To = []string{to}
	case []any:
		for _, v := range to {
			s, ok := v.(string)
			if !ok {
				return nil, a.ErrorfAt("to", "must be an address or a list of addresses")
			}
			cfg.To = append(cfg.To, s)
		}
		if len(cfg.To) == 0 {
			return nil, a.ErrorfAt("to", "the list is empty")
		}
	default:
		return nil, a.ErrorfAt("to", "must be an address or a list of addresses")
	}
	if a.Has("to") && a.Has("to_template") {
		return nil, a.ErrorfAt("to_template", "to and to_template are mutually exclusive")
	}
	if a.Has("subject") && a.Has("subject_template") {
		return nil, a.ErrorfAt("subject_template", "subject and subject_template are mutually exclusive")
	}
	var errs []error
	for _, t := range []struct{ key, src string }{
		{"to_template", cfg.ToTemplate}, {"subject_template", cfg.SubjectTemplate}, {"body_template", cfg.BodyTemplate},
	} {
		if t.src == "" {
			continue
		}
		if _, err := eval.CompileTemplate(t.src, eval.EscapeNone, eval.Options{}); err != nil {
			errs = append(errs, &configs.Error{Pos: exprPos(a.KeyPos(t.key), err), Msg: "action " + a.ID + ": " + t.key + ": " + exprMsg(err)})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if cfg.TLS == email.TLSNone && !email.IsLoopback(cfg.Host) {
		b.log.Warn().Str("where", a.KeyPos("smtp").String()).Str("action", a.ID).
			Msg("email: smtp.tls is none: messages travel in clear text to a host that is not loopback")
	}
	if b.validateOnly {
		return nil, nil
	}
	s, err := email.New(cfg, email.Options{Meta: eval.Meta{Entity: b.entity(a)}})
	if err != nil {
		return nil, a.Errorf("%v", err)
	}
	return s, nil
}
