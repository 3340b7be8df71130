// Package metrics keeps gridbell's counters and gauges and writes them in the
// Prometheus text format for GET /metrics. It is deliberately tiny: atomic
// counters keyed by name and a fixed label set, no dependencies.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is a monotonically increasing value.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the gauge.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Value returns the gauge's value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

type family struct {
	help   string
	typ    string
	series map[string]*series // joined label values → series
}

type series struct {
	labels string // {k="v",…} as exposed
	metric any    // *Counter or *Gauge
}

// Registry holds metric families. The zero value is not usable; use New.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

// New returns an empty registry.
func New() *Registry { return &Registry{families: map[string]*family{}} }

// Default is the process-wide registry that /metrics serves.
var Default = New()

// Counter returns the counter name{labels}, creating it on first use.
// labels alternate key, value.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return r.get(name, help, "counter", labels, func() any { return new(Counter) }).(*Counter)
}

// Gauge returns the gauge name{labels}, creating it on first use.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return r.get(name, help, "gauge", labels, func() any { return new(Gauge) }).(*Gauge)
}

func (r *Registry) get(name, help, typ string, labels []string, mk func() any) any {
	// The lookup key only joins the labels; the exposed form is built once,
	// when the series is created. Callers may ask on every event.
	key := strings.Join(labels, "\xff")
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.families[name]
	if f == nil {
		f = &family{help: help, typ: typ, series: map[string]*series{}}
		r.families[name] = f
	}
	se := f.series[key]
	if se == nil {
		se = &series{labels: labelString(labels), metric: mk()}
		f.series[key] = se
	}
	return se.metric
}

func labelString(labels []string) string {
	if len(labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// WriteText writes every metric in the Prometheus text exposition format.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := r.families[n]
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", n, f.help, n, f.typ); err != nil {
			return err
		}
		list := make([]*series, 0, len(f.series))
		for _, se := range f.series {
			list = append(list, se)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].labels < list[j].labels })
		for _, se := range list {
			var v string
			switch m := se.metric.(type) {
			case *Counter:
				v = fmt.Sprint(m.Value())
			case *Gauge:
				v = fmt.Sprint(m.Value())
			}
			if _, err := fmt.Fprintf(w, "%s%s %s\n", n, se.labels, v); err != nil {
				return err
			}
		}
	}
	return nil
}
