package rules

import (
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/metrics"
)

// TestLatencyMetrics: a momentary decision taken in a batch that also
// applied an event is observed by both latency histograms, and counted.
func TestLatencyMetrics(t *testing.T) {
	te := newTestEngine(t, Config{})
	lag0, e2i0 := metrics.Count(decisionLag), metrics.Count(eventToIntent)
	te.at(0, meterEv("M0202", event.PowerOff, 0))
	if got := metrics.Count(eventToIntent) - e2i0; got != 0 {
		t.Errorf("a batch that wrote no intent was observed %d times, want 0", got)
	}
	reading := readingEv("M0101", 61*time.Second, 100)
	reading.Received = time.Now()
	got := te.at(61*time.Second, reading)
	if count(got, "outage:A0202") != 1 {
		t.Fatalf("intents = %v, want an outage for A0202", got)
	}
	if got := metrics.Count(decisionLag) - lag0; got != 1 {
		t.Errorf("gridbell_rules_decision_lag_seconds got %d observations, want 1", got)
	}
	if got := metrics.Count(eventToIntent) - e2i0; got != 1 {
		t.Errorf("gridbell_rules_event_to_intent_seconds got %d observations, want 1", got)
	}
	// The window closed at 60 s (the gasp + momentary) and was decided at 61 s.
	if lag := te.MaxDecisionLag(); lag != time.Second {
		t.Errorf("MaxDecisionLag() = %v, want 1s", lag)
	}
}

// TestStormGauges: a meter gone dark is counted dark with its decision
// pending (and its area listed as pending) while the momentary window
// runs; once the window closes it is an active outage with its customers,
// and nothing is pending. The gauges served on /metrics say the same.
func TestStormGauges(t *testing.T) {
	te := newTestEngine(t, Config{})
	gauges := func() stormStats {
		t.Helper()
		scraped.Store(te.Engine)
		stormMu.Lock()
		stormLast = stormStats{}
		stormMu.Unlock()
		s := stormStats{active: int(metrics.Default.Sum("gridbell_outages_active")),
			affected: int(metrics.Default.Sum("gridbell_outage_customers_affected")),
			dark:     int(metrics.Default.Sum("gridbell_meters_dark")),
			pending:  int(metrics.Default.Sum("gridbell_momentary_decisions_pending"))}
		if direct := te.stormStats(); direct.active != s.active || direct.dark != s.dark || direct.pending != s.pending {
			t.Errorf("gauges %+v, engine %+v", s, direct)
		}
		return s
	}
	te.at(0, meterEv("M0202", event.PowerOff, 0))
	if s := gauges(); s.active != 0 || s.dark != 1 || s.pending != 1 {
		t.Errorf("in the window: %+v, want 1 dark meter, its decision pending, no outage", s)
	}
	if p := te.Pending(); len(p) != 1 || p[0].Meters != 1 || !p[0].DecideAt.Equal(t0.Add(60*time.Second)) {
		t.Errorf("Pending() = %+v, want one area, one meter, deciding at t0+60s", p)
	}
	te.at(61*time.Second, readingEv("M0101", 61*time.Second, 100))
	if s := gauges(); s.active != 1 || s.affected < 1 || s.dark != 1 || s.pending != 0 {
		t.Errorf("after the window: %+v, want 1 active outage with its customers, 1 dark meter, nothing pending", s)
	}
	if p := te.Pending(); len(p) != 0 {
		t.Errorf("Pending() after the window = %+v, want none", p)
	}
}
