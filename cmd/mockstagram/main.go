// Command mockstagram runs the Mockstagram follower pipeline: all stages in
// one process (run), one stage each, the simulator, migrations and the
// registry and dead-letter tools.
package main

import (
	"os"

	"github.com/mockstagram/pipeline/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
