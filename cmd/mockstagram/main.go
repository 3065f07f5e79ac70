// Command mockstagram runs the Mockstagram follower pipeline: all stages in
// one process (run), one stage each, the simulator, migrations and the
// registry and dead-letter tools.
package main

import (
	"os"

	"github.com/mockstagram/pipeline/cli"
)

// version is set at link time (go build -ldflags "-X main.version=v1.2.3");
// empty: --version prints the module version and VCS revision of the build.
var version string

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr, cli.WithVersion(version)))
}
