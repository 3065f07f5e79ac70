package cli

import (
	"fmt"

	"github.com/alecthomas/kong"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
)

// RunCmd is 'mockstagram run'.
type RunCmd struct {
	config.Config `embed:"" group:"pipeline"`
}

// Run starts every stage and the API in one process.
func (c RunCmd) Run(e env) error {
	return app.Run(e.ctx, c.Config, app.AllRoles(), func(p *app.Process) {
		fmt.Fprintf(e.stdout, "Mockstagram pipeline running: API and dashboard at http://%s (try /api/v1/influencers/1000000), fetching from %s. Ctrl-C stops.\n",
			displayHost(p.HTTPAddr), p.APIBaseURL)
	})
}

// StageCmd runs one stage; which one is the command's name.
type StageCmd struct {
	config.Config `embed:"" group:"pipeline"`
}

// Run starts the stage named by the command, if it can run alone.
func (c StageCmd) Run(e env, kctx *kong.Context) error {
	cfg := c.Config
	stage := kctx.Command()
	roles, err := app.Stage(stage, cfg)
	if err != nil {
		return usageError{err}
	}
	return app.Run(e.ctx, cfg, roles, func(p *app.Process) {
		fmt.Fprintf(e.stdout, "mockstagram %s running; health and metrics at http://%s\n", stage, displayHost(p.HTTPAddr))
	})
}

func displayHost(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		return "localhost" + addr
	}
	if len(addr) > 5 && addr[:5] == "[::]:" {
		return "localhost:" + addr[5:]
	}
	if len(addr) > 8 && addr[:8] == "0.0.0.0:" {
		return "localhost:" + addr[8:]
	}
	return addr
}
