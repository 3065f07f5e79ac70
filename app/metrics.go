package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/metrics"
)

// MetricsModule provides the Prometheus registry and the pipeline metrics.
var MetricsModule = fx.Module("metrics",
	fx.Provide(
		func() *prometheus.Registry {
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			return reg
		},
		func(reg *prometheus.Registry) *metrics.Pipeline { return metrics.New(reg) },
	),
)
