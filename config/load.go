package config

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
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
