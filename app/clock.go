package app

import (
	"github.com/jonboulle/clockwork"
	"go.uber.org/fx"
)

// ClockModule provides the wall clock; tests decorate it with a fake.
var ClockModule = fx.Module("clock",
	fx.Provide(func() clockwork.Clock { return clockwork.NewRealClock() }),
)
