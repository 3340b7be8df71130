package care

import "github.com/gridbell/gridbell/internal/metrics"

var (
	metricSteps = metrics.Default.Counter("gridbell_care_steps_total",
		"steps of the care projection (each reads what the rules committed since the last)")
	metricRows = metrics.Default.Counter("gridbell_care_interruptions_written_total",
		"customer interruption rows the care projection wrote (new or changed)")
	metricOpen = metrics.Default.Gauge("gridbell_care_open_interruptions",
		"customers the care projection holds in an open interruption")
	metricCalls = metrics.Default.CounterVec("gridbell_care_calls_total",
		"hotline lookups that found a customer in an outage, by whether an SMS of that outage had reached them (before_sms: not yet)",
		"when")
	metricApologies = metrics.Default.Counter("gridbell_care_apologies_total",
		"outage SMS rendered with the frequent-outage apology (recent_outages)")
	metricFollowups = metrics.Default.Counter("gridbell_care_followups_total",
		"follow-up lists (回访) sent to grid managers after a restoration")
	metricPruned = metrics.Default.Counter("gridbell_care_pruned_total",
		"care history rows pruned for being older than care.history")
)

func init() { // every series exists from the start
	metricCalls.WithLabelValues("before_sms")
	metricCalls.WithLabelValues("after_sms")
}
