package rules

import "github.com/gridbell/gridbell/internal/metrics"

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
