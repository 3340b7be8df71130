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
