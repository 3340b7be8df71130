package rules

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridbell/gridbell/internal/metrics"
)

// The rules' metrics (docs/metrics.md).
var (
	stormGauge      = metrics.Default.Gauge("gridbell_storm_mode", "1 while the rules are in storm mode, else 0.")
	eventsApplied   = metrics.Default.Counter("gridbell_rules_events_total", "Events applied by the rules.")
	intentsWritten  = metrics.Default.Counter("gridbell_rules_intents_total", "Notification intents written by the rules.")
	digestNoManager = metrics.Default.Counter("gridbell_rules_digest_no_manager_total", "Manager digests not sent: the grid has no manager phone.")
	batchesDone     = metrics.Default.Counter("gridbell_rules_batches_total", "Group commits of the rules.")
	decisionLag     = metrics.Default.Histogram("gridbell_rules_decision_lag_seconds",
		"Per rules batch that took due momentary decisions: from the earliest window closing to the decisions committed.",
		metrics.LatencyBuckets)
	eventToIntent = metrics.Default.Histogram("gridbell_rules_event_to_intent_seconds",
		"Per rules batch of events that wrote intents: from the arrival at gridbell of the batch's oldest event to the intents committed.",
		metrics.LatencyBuckets)
	commandsForwarded = metrics.Default.CounterVec("gridbell_rules_commands_forwarded_total",
		"Distributed mode: API writes (confirm, still_out) this instance forwarded through the meter topic to the instance running the rules.", "command")
	commandsRefused = metrics.Default.CounterVec("gridbell_rules_commands_refused_total",
		"Distributed mode: forwarded API writes the rules did not apply (unknown outage, customers dark again without a reason).", "command")
)

// The storm gauges: what an operator watches in a storm, read from the
// engine when /metrics is scraped (one pass over its state, shared by the
// four gauges of one scrape).
func init() {
	metrics.Default.GaugeFunc("gridbell_outages_active",
		"Outage records active now (planned ones once they start).", func() float64 { return float64(stormNow().active) })
	metrics.Default.GaugeFunc("gridbell_outage_customers_affected",
		"Customers in scope of the active outages (summed over them: a customer in two nested outages counts twice).",
		func() float64 { return float64(stormNow().affected) })
	metrics.Default.GaugeFunc("gridbell_meters_dark",
		"Meters out now: dark by their own report, or without news since a live outage holding them began.",
		func() float64 { return float64(stormNow().dark) })
	metrics.Default.GaugeFunc("gridbell_momentary_decisions_pending",
		"Dark meters whose momentary window is still running: an outage decision is pending for them.",
		func() float64 { return float64(stormNow().pending) })
}

// scraped is the engine the storm gauges read: the one applying input, or
// else the latest built.
var scraped atomic.Pointer[Engine]

// stormStats are the storm gauges' values.
type stormStats struct {
	at                              time.Time
	took                            time.Duration // how long the pass took
	active, affected, dark, pending int
}

var (
	stormMu   sync.Mutex
	stormLast stormStats
)

// stormNow gives the storm gauges, computed at most once a second, and
// taking at most a tenth of the time: at 10M meters a pass takes about a
// second, and Prometheus and dashboards may scrape every second.
func stormNow() stormStats {
	stormMu.Lock()
	defer stormMu.Unlock()
	if time.Since(stormLast.at) < max(time.Second, 10*stormLast.took) {
		return stormLast
	}
	began := time.Now()
	stormLast = stormStats{at: began}
	if e := scraped.Load(); e != nil {
		stormLast = e.stormStats()
		stormLast.at = began
	}
	stormLast.took = time.Since(began)
	return stormLast
}

// stormChunk is how many meters stormStats reads under one read lock.
const stormChunk = 1 << 16

// stormStats counts the live outages, their customers, and the dark meters
// with and without a pending decision. It takes the read lock an outage, or
// stormChunk meters, at a time, so the writer is never held up by a whole
// pass (at 10M meters one pass under one lock held every batch of a storm
// back by about a second); the counts may mix a few batches' states.
func (e *Engine) stormStats() stormStats {
	var s stormStats
	e.mu.RLock()
	n := len(e.outages)
	e.mu.RUnlock()
	for o := range n {
		e.mu.RLock()
		if o < len(e.outages) {
			if r := e.outages[o]; r.Status == statusActive {
				s.active++
				s.affected += e.count(r, false).Counts.Affected
			}
		}
		e.mu.RUnlock()
	}
	for from := 0; ; from += stormChunk {
		e.mu.RLock()
		to := min(from+stormChunk, len(e.meters))
		for i := from; i < to; i++ {
			if !e.isOut(int32(i)) {
				continue
			}
			s.dark++
			if m := &e.meters[i]; m.due != 0 && m.st == stDark {
				s.pending++
			}
		}
		done := to == len(e.meters)
		e.mu.RUnlock()
		if done {
			return s
		}
	}
}
