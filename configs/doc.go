// Package configs loads the YAML configuration of fraiseql-observers.
//
// Loading is strict: unknown keys, duplicate keys, wrong types and invalid values
// are errors, and every error names the file, line and column it is about
// ("config.yaml:12:5: observers.order_shipped: unknown key \"retires\" (did you
// mean \"retry\"?)"). [Load] and [Parse] collect every error they can find into
// one [*Errors], so an operator fixes a file in one pass.
//
// String values may refer to environment variables as ${NAME} or
// ${NAME:-default}; "$${" writes a literal "${". Keys ending in _env name the
// variable that holds a secret: one mechanism for every key, the env option of a
// yaml tag on a [Secret] (or string) field (`yaml:"url,env"` takes url or url_env,
// `yaml:"password_env,env"` only the variable). Secrets never appear in errors,
// warnings or formatted values: DSN passwords are removed with [RedactDSN], env
// variables are named but never echoed, and [Secret] formats as "[redacted]".
//
// [Load] refuses a reference to a variable that is not set. [LoadWith] with
// [Options].DeferEnv lists it instead ([Config.Unset], [Action.Unset]), leaves its
// value unknown and unchecked, and lets a command ask with [Config.Need] for the
// keys it uses: the operator commands and validate-config run so.
//
// Actions are kept as raw YAML: the package does not know the sinks. The wiring
// code decodes each [Action] into the sink's own options struct with
// [Action.Decode], which is just as strict and positioned.
//
// docs/configuration.md documents every key.
package configs
