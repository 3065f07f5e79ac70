package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix prefixes every environment variable: MOCKSTAGRAM_API_URL.
const EnvPrefix = "MOCKSTAGRAM"

// KongOptions are the parser options every command line of the project uses:
// environment variables for every flag and the YAML config file loader.
func KongOptions() []kong.Option {
	return []kong.Option{
		kong.DefaultEnvars(EnvPrefix),
		kong.Configuration(YAMLLoader),
	}
}

// File is the --config flag; embed it next to Config in a command line.
type File struct {
	Config kong.ConfigFlag `name:"config" type:"path" env:"MOCKSTAGRAM_CONFIG" help:"Optional YAML config file; keys are flag names."`
}

// Load parses args as flags, reads MOCKSTAGRAM_* environment variables and the
// optional config file (--config), and validates the result.
func Load(args []string) (Config, error) {
	var cli struct {
		File
		Config `embed:""`
	}
	opts := append(KongOptions(), kong.Name("mockstagram"), kong.Exit(func(int) {}))
	parser, err := kong.New(&cli, opts...)
	if err != nil {
		return Config{}, fmt.Errorf("config parser: %w", err)
	}
	if _, err := parser.Parse(args); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cli.Validate(); err != nil {
		return cli.Config, fmt.Errorf("invalid config:\n%w", err)
	}
	return cli.Config, nil
}

// YAMLLoader reads a YAML config file whose keys are flag names. Unknown keys
// are an error, so a typo does not silently fall back to a default.
func YAMLLoader(r io.Reader) (kong.Resolver, error) {
	raw, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	values := map[string]any{}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return fileResolver{keys: values}, nil
}

type fileResolver struct {
	keys map[string]any
}

// Resolve returns the file's value for a flag, by the flag's name. Lists are
// joined with the flag's separator so kong parses them like a flag value.
func (f fileResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	v, ok := f.keys[flag.Name]
	if !ok {
		return nil, nil
	}
	for _, env := range flag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil // the environment overrides the file
		}
	}
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, p := range list {
			parts[i] = fmt.Sprint(p)
		}
		sep := string(flag.Tag.Sep)
		if flag.Tag.Sep == 0 || flag.Tag.Sep == -1 {
			sep = ","
		}
		return strings.Join(parts, sep), nil
	}
	return v, nil
}

// Validate rejects keys that are not flags of the application.
func (f fileResolver) Validate(app *kong.Application) error {
	known := map[string]bool{}
	_ = kong.Visit(app, func(node kong.Visitable, next kong.Next) error {
		if fl, ok := node.(*kong.Flag); ok {
			known[fl.Name] = true
		}
		return next(nil)
	})
	var unknown []string
	for k := range f.keys {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		return fmt.Errorf("config file: unknown keys: %s", strings.Join(unknown, ", "))
	}
	return nil
}

// EnvNames lists every MOCKSTAGRAM_* environment variable a Config reads.
func EnvNames() ([]string, error) {
	var cli struct {
		File
		Config `embed:""`
	}
	parser, err := kong.New(&cli, KongOptions()...)
	if err != nil {
		return nil, fmt.Errorf("config parser: %w", err)
	}
	var names []string
	_ = kong.Visit(parser.Model, func(node kong.Visitable, next kong.Next) error {
		if fl, ok := node.(*kong.Flag); ok {
			names = append(names, fl.Envs...)
		}
		return next(nil)
	})
	sort.Strings(names)
	return names, nil
}

// BeforeReset is a kong hook: it checks every value the environment and
// the config file give the command's flags before kong decodes them, so a
// command line with several mistyped values (MOCKSTAGRAM_SHARDS=abc and
// MOCKSTAGRAM_FETCH_TIMEOUT=xyz) reports them all, with the validation
// errors of the other values, instead of kong's first one. Values given as
// flags on the command line are decoded by kong before any hook, so a
// mistyped flag is still reported alone.
func (c *Config) BeforeReset(kctx *kong.Context) error {
	for _, trace := range kctx.Path {
		if trace.Flag != nil && (trace.Flag.Name == "help" || trace.Flag.Name == "version") {
			return nil // --help and --version answer whatever the environment holds
		}
	}
	file := configFileKeys(kctx)
	var typeErrs []error
	for _, f := range kctx.Flags() {
		if err := c.preset(kctx, f, file); err != nil {
			typeErrs = append(typeErrs, err)
		}
	}
	if len(typeErrs) == 0 {
		return nil // kong decodes and validates as usual
	}
	// Each mistyped value was replaced by its default; the rest of the
	// configuration is validated as it will be once the values are fixed.
	errs := typeErrs
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return fmt.Errorf("invalid config:\n%w", errors.Join(errs...))
}

// preset decodes flag f's value from its source as kong would (a value
// parsed from the command line, else the environment, else the config
// file, else the default) into its target, which kong resets afterwards.
// A value that does not decode is reported, and the default used instead.
func (c *Config) preset(kctx *kong.Context, f *kong.Flag, file map[string]any) error {
	if !f.Target.IsValid() || !f.Target.CanSet() {
		return nil
	}
	for _, trace := range kctx.Path {
		if trace.Flag == f { // from the command line: kong decoded it
			if v := reflect.ValueOf(kctx.FlagValue(f)); v.IsValid() && v.Type().AssignableTo(f.Target.Type()) {
				f.Target.Set(v)
			}
			return nil
		}
	}
	var (
		scan *kong.Scanner
		from string
	)
	for _, env := range f.Tag.Envs {
		if raw, ok := os.LookupEnv(env); ok {
			scan, from = kong.ScanFromTokens(kong.Token{Type: kong.FlagValueToken, Value: raw}), env
			break
		}
	}
	if scan == nil {
		if _, ok := file[f.Name]; ok {
			v, _ := fileResolver{keys: file}.Resolve(kctx, nil, f) // joins lists as kong's resolver gets them
			scan, from = kong.Scan().PushTyped(v, kong.FlagValueToken), "the config file"
		}
	}
	var err error
	if scan != nil {
		f.Target.Set(reflect.Zero(f.Target.Type()))
		if err = f.Mapper.Decode(&kong.DecodeContext{Value: f.Value, Scan: scan}, f.Target); err == nil {
			return nil
		}
		err = fmt.Errorf("%s: %w (from %s)", f.Name, err, from)
	}
	f.Target.Set(reflect.Zero(f.Target.Type()))
	if f.HasDefault {
		_ = f.Mapper.Decode(&kong.DecodeContext{Value: f.Value, Scan: kong.ScanFromTokens(kong.Token{Type: kong.FlagValueToken, Value: f.Default})}, f.Target)
	}
	return err
}

// configFileKeys reads the config file the command line or the environment
// names, if any; a file that cannot be read is left to kong to report.
func configFileKeys(kctx *kong.Context) map[string]any {
	var path string
	for _, f := range kctx.Flags() {
		if _, ok := f.Target.Interface().(kong.ConfigFlag); !ok {
			continue
		}
		if p, ok := kctx.FlagValue(f).(kong.ConfigFlag); ok && p != "" {
			path = string(p)
		}
		for _, env := range f.Tag.Envs {
			if p, ok := os.LookupEnv(env); ok && path == "" {
				path = p
			}
		}
	}
	if path == "" {
		return nil
	}
	fh, err := os.Open(kong.ExpandPath(path))
	if err != nil {
		return nil
	}
	defer fh.Close()
	r, err := YAMLLoader(fh)
	if err != nil {
		return nil
	}
	return r.(fileResolver).keys
}
