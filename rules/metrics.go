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
	active, affected, dark, pending int
}

var (
	stormMu   sync.Mutex
	stormLast stormStats
)

// stormNow gives the storm gauges, computed at most once a second.
func stormNow() stormStats {
	stormMu.Lock()
	defer stormMu.Unlock()
	if time.Since(stormLast.at) < time.Second {
		return stormLast
	}
	stormLast = stormStats{at: time.Now()}
	if e := scraped.Load(); e != nil {
		stormLast = e.stormStats()
		stormLast.at = time.Now()
	}
	return stormLast
}

// stormStats counts the live outages, their customers, and the dark meters
// with and without a pending decision.
func (e *Engine) stormStats() stormStats {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var s stormStats
	for _, r := range e.outages {
		if r.Status != statusActive {
			continue
		}
		s.active++
		s.affected += e.count(r, false).Counts.Affected
	}
	for i := range e.meters {
		if !e.isOut(int32(i)) {
			continue
		}
		s.dark++
		if m := &e.meters[i]; m.due != 0 && m.st == stDark {
			s.pending++
		}
	}
	return s
}
