package contacts

import "github.com/gridbell/gridbell/internal/metrics"

// Registry-wide figures for /metrics, set whenever a new index goes live.
var (
	customersGauge = metrics.Default.Gauge("gridbell_contacts_customers", "active customers (meters) in the registry")
	accountsGauge  = metrics.Default.Gauge("gridbell_contacts_accounts", "active accounts in the registry")
	validListGauge = metrics.Default.Gauge("gridbell_contacts_valid_list_rate",
		"share of active accounts with a number that can take SMS, as of the last import or start")
)

func importRows(result string) *metrics.Counter {
	return metrics.Default.Counter("gridbell_contacts_import_rows_total", "contacts file rows by import result", "result", result)
}

func verdictsCounter(v Verdict) *metrics.Counter {
	return metrics.Default.Counter("gridbell_contacts_verdicts_total", "phone verdicts set after import (SMS provider)", "verdict", string(v))
}

// publish sets the gauges from ix.
func publish(ix *index) {
	customersGauge.Set(float64(ix.activeMeters))
	accountsGauge.Set(float64(ix.active))
	validListGauge.Set(ix.cachedReport().Total.ValidListRate)
}
