// Package metrics is gridbell's thin layer over prometheus/client_golang.
// Every stage declares its metrics through it on the process-wide Default
// registry, which also carries the Go runtime, process and build-info
// collectors; GET /metrics serves Default. docs/metrics.md lists every
// family.
//
// Declaring is idempotent: asking again for a metric that is already
// registered with the same name, help and labels returns the one registered,
// so components built several times in one process (tests, the
// benchmarks) share their series instead of failing. A clash (same name,
// other help, labels or type) is a programming error and panics.
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// The metric types the stages hold: client_golang's own.
type (
	Counter      = prometheus.Counter
	Gauge        = prometheus.Gauge
	Histogram    = prometheus.Histogram
	CounterVec   = prometheus.CounterVec
	GaugeVec     = prometheus.GaugeVec
	HistogramVec = prometheus.HistogramVec
)

// LatencyBuckets (seconds) suit the stages of a notification, from a rules
// commit (milliseconds) to an SMS that waited behind a paced backlog
// (hours).
var LatencyBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200}

// CallBuckets (seconds) suit one call to a server: an HTTP request, a send
// to Twilio.
var CallBuckets = prometheus.DefBuckets

// Registry is a Prometheus registry with idempotent declarations.
type Registry struct {
	reg *prometheus.Registry
}

// New returns a registry holding the Go runtime, process and build-info
// collectors.
func New() *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		newBuildInfo(),
	)
	return r
}

// Default is the process-wide registry that /metrics serves.
var Default = New()

// Counter declares a counter without labels.
func (r *Registry) Counter(name, help string) Counter {
	return register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

// CounterVec declares a counter with labels. Callers create the series
// they know of up front (WithLabelValues) so that each is 0 from the start.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	return register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

// Gauge declares a gauge without labels.
func (r *Registry) Gauge(name, help string) Gauge {
	return register(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

// GaugeFunc registers a gauge whose value f gives at each scrape. Asked
// again, it keeps the first f.
func (r *Registry) GaugeFunc(name, help string, f func() float64) prometheus.GaugeFunc {
	return register(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter whose value f gives at each scrape. Asked
// again, it keeps the first f.
func (r *Registry) CounterFunc(name, help string, f func() float64) prometheus.CounterFunc {
	return register(r, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// GaugeVec declares a gauge with labels.
func (r *Registry) GaugeVec(name, help string, labels ...string) *GaugeVec {
	return register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
}

// Histogram declares a histogram without labels.
func (r *Registry) Histogram(name, help string, buckets []float64) Histogram {
	return register(r, prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}))
}

// HistogramVec declares a histogram with labels.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	return register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
}

// register registers c, or returns the equal collector registered before.
func register[C prometheus.Collector](r *Registry, c C) C {
	err := r.reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old
		}
		err = fmt.Errorf("registered before as %T", are.ExistingCollector)
	}
	panic(fmt.Sprintf("metrics: cannot register %T: %v", c, err))
}

// Gatherer is the registry as client_golang reads it (tests, promlint).
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails is reported in the answer and the log of the caller,
// not by a 500 for the whole scrape.
func (r *Registry) Handler(log promhttp.Logger) http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorLog: log, ErrorHandling: promhttp.ContinueOnError})
}

// version is what gridbell_build_info reports; main sets it.
var version atomic.Value

// SetVersion sets the version gridbell_build_info reports (main's, from
// -ldflags -X main.version).
func SetVersion(v string) { version.Store(v) }

// buildInfo exposes gridbell_build_info{version,revision,goversion} 1, the
// usual way to join a version to other series.
type buildInfo struct{ desc *prometheus.Desc }

func newBuildInfo() buildInfo {
	return buildInfo{desc: prometheus.NewDesc("gridbell_build_info",
		"Always 1; its labels name the running gridbell's version, VCS revision and Go version.",
		[]string{"version", "revision", "goversion"}, nil)}
}

func (b buildInfo) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b buildInfo) Collect(ch chan<- prometheus.Metric) {
	v, _ := version.Load().(string)
	if v == "" {
		v = "dev"
	}
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, 1, v, revision(), runtime.Version())
}

// revision is the VCS revision the binary was built from, or "unknown"
// (builds with -buildvcs=false, and tests).
var revision = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "unknown"
})

// Count returns how many observations a histogram series holds, for tests
// and the benchmark programs; 0 for anything else.
func Count(h prometheus.Observer) uint64 {
	m, ok := h.(prometheus.Metric)
	if !ok {
		return 0
	}
	var d dto.Metric
	if m.Write(&d) != nil {
		return 0
	}
	return d.GetHistogram().GetSampleCount()
}

// Sum returns the sum of every series of the counter or gauge family name
// (0 when there is none), for the benchmark programs and tests that only
// know the name.
func (r *Registry) Sum(name string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
