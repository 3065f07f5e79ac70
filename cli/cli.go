// Package cli is the mockstagram command line: kong parses flags, the
// MOCKSTAGRAM_* environment and the optional config file, and each
// subcommand starts the fx application or a tool. The commands that run the
// pipeline embed the whole config.Config (its flags grouped after the
// command's own in --help); the tools take only the few settings they use.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/mockstagram/pipeline/config"
)

// CLI is the command line.
type CLI struct {
	config.File
	Version kong.VersionFlag `name:"version" env:"-" help:"Print the version and exit."`

	// One line per subcommand.
	Run       RunCmd       `cmd:"" help:"All stages and the HTTP API in one process (starts the built-in simulator when --api-url is unset)."`
	Scheduler StageCmd     `cmd:"" help:"Only the scheduler (leader or hot standby)."`
	Fetcher   StageCmd     `cmd:"" help:"Only a fetcher; run any number."`
	Recorder  StageCmd     `cmd:"" help:"Only a recorder; run any number."`
	Suspicion StageCmd     `cmd:"" help:"Only the suspicion checker (daily is_suspicious refresh); run any number."`
	API       StageCmd     `cmd:"" name:"api" help:"Only the HTTP API and dashboard."`
	Simulate  SimulateCmd  `cmd:"" help:"Serve a Mockstagram API simulator."`
	Migrate   MigrateCmd   `cmd:"" help:"Apply database migrations."`
	Registry  RegistryCmd  `cmd:"" help:"Change or list the tracked influencers."`
	DLQ       DLQCmd       `cmd:"" name:"dlq" help:"Inspect and replay dead letters."`
	Bench     BenchCmd     `cmd:"" help:"Measure the limits (simulator GET rate, store write rate), then the pipeline for whole minutes in each wiring, and report throughput, freshness, reads, CPU and memory per process."`
	BenchNode BenchNodeCmd `cmd:"" name:"bench-node" hidden:"" help:"A pipeline process of 'bench' (run or one stage, with a meter on its store)."`
	KafkaDev  KafkaDevCmd  `cmd:"" name:"kafka-dev" help:"Serve an in-memory Kafka-protocol broker (kfake) for trying --broker kafka locally; nothing is persisted."`
	Health    HealthCmd    `cmd:"" name:"healthcheck" help:"GET a health URL (default: this process's /readyz on --http-addr) and exit 0 on 2xx, 1 otherwise: the container healthcheck of the distroless image."`
}

// env is what every command gets.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
}

// groupPipeline is the help group of the pipeline's settings: the
// commands that run the pipeline embed config.Config with group:"pipeline",
// so --help lists them after the command's own flags.
const groupPipeline = "pipeline"

// Option changes how Main runs.
type Option func(*options)

type options struct {
	version string
}

// WithVersion sets the version --version prints (set at link time, e.g.
// -ldflags "-X main.version=v1.2.3"); empty: the module version and VCS
// revision the binary was built from.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer, opt ...Option) int {
	var o options
	for _, f := range opt {
		f(&o)
	}
	var cli CLI
	exitCode := -1
	parser, err := newParser(&cli, o, stdout, stderr, func(code int) { exitCode = code })
	if err != nil {
		fmt.Fprintln(stderr, "mockstagram:", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if exitCode >= 0 {
		return exitCode // --help, --version
	}
	if err != nil {
		fmt.Fprintln(stderr, "mockstagram:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := env{ctx: ctx, stdout: stdout, stderr: stderr}
	if err := kctx.Run(e); err != nil {
		var usage usageError
		if errors.As(err, &usage) {
			fmt.Fprintln(stderr, "mockstagram:", err)
			return 2
		}
		fmt.Fprintln(stderr, "mockstagram:", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// newParser is the command line's parser; exit is called for --help and
// --version instead of exiting.
func newParser(cli *CLI, o options, stdout, stderr io.Writer, exit func(int)) (*kong.Kong, error) {
	opts := append(config.KongOptions(),
		kong.Name("mockstagram"),
		kong.Description("Mockstagram follower pipeline."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(exit),
		kong.Vars{"version": versionString(o.version, readBuildInfo())},
		kong.ExplicitGroups([]kong.Group{{
			Key:         groupPipeline,
			Title:       "Pipeline flags:",
			Description: "Settings of the pipeline stages, shared by every process (each also a MOCKSTAGRAM_* variable and a --config key).",
		}}),
	)
	return kong.New(cli, opts...)
}
