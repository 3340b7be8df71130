package contacts

import "github.com/gridbell/gridbell/internal/metrics"

// Registry-wide figures for /metrics, set whenever a new index goes live.
var (
	customersGauge = metrics.Default.Gauge("gridbell_contacts_customers", "Active customers (meters) in the contacts registry.")
	accountsGauge  = metrics.Default.Gauge("gridbell_contacts_accounts", "Active accounts in the contacts registry.")
	validListGauge = metrics.Default.Gauge("gridbell_contacts_valid_list_ratio",
		"Share (0 to 1) of active accounts with a number that can take SMS, as of the last import or start.")
	importRowsVec = metrics.Default.CounterVec("gridbell_contacts_import_rows_total",
		"Contacts file rows imported, by result (imported, rejected).", "result")
	verdictsVec = metrics.Default.CounterVec("gridbell_contacts_verdicts_total",
		"Phone verdicts set after import from what the SMS provider said, by verdict.", "verdict")
)

func init() {
	for _, r := range []string{"imported", "rejected"} {
		importRowsVec.WithLabelValues(r)
	}
	for _, v := range []Verdict{Valid, Fixed, Landline, Invalid, Missing} {
		verdictsVec.WithLabelValues(string(v))
	}
}

func importRows(result string) metrics.Counter { return importRowsVec.WithLabelValues(result) }

func verdictsCounter(v Verdict) metrics.Counter { return verdictsVec.WithLabelValues(string(v)) }

// publish sets the gauges from ix.
func publish(ix *index) {
	customersGauge.Set(float64(ix.activeMeters))
	accountsGauge.Set(float64(ix.active))
	validListGauge.Set(ix.cachedReport().Total.ValidListRate)
}
