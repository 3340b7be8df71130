package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDeclareTwiceGivesTheSameMetric(t *testing.T) {
	r := New()
	a := r.CounterVec("gridbell_test_rejected_total", "Rejected messages.", "source")
	a.WithLabelValues("mqtt").Add(3)
	b := r.CounterVec("gridbell_test_rejected_total", "Rejected messages.", "source")
	b.WithLabelValues("mqtt").Inc()
	if got := testutil.ToFloat64(a.WithLabelValues("mqtt")); got != 4 {
		t.Errorf("after 3 + 1 through two declarations the counter is %v, want 4", got)
	}
	g := r.Gauge("gridbell_test_storm_mode", "1 in storm mode.")
	g.Set(1)
	if got := testutil.ToFloat64(r.Gauge("gridbell_test_storm_mode", "1 in storm mode.")); got != 1 {
		t.Errorf("gauge declared again reads %v, want 1", got)
	}
}

func TestClashPanics(t *testing.T) {
	for name, declare := range map[string]func(r *Registry){
		"other help":   func(r *Registry) { r.Counter("gridbell_test_total", "Something else.") },
		"other labels": func(r *Registry) { r.CounterVec("gridbell_test_total", "Things.", "kind") },
		"other type":   func(r *Registry) { r.Gauge("gridbell_test_total", "Things.") },
	} {
		t.Run(name, func(t *testing.T) {
			r := New()
			r.Counter("gridbell_test_total", "Things.")
			defer func() {
				if recover() == nil {
					t.Error("a clashing declaration did not panic")
				}
			}()
			declare(r)
		})
	}
}

func TestHandlerServesStandardFamilies(t *testing.T) {
	SetVersion("v1.2.3")
	defer SetVersion("")
	r := New()
	r.Histogram("gridbell_test_seconds", "A latency.", LatencyBuckets).Observe(0.2)
	rec := httptest.NewRecorder()
	r.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	got := string(body)
	for _, want := range []string{
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_resident_memory_bytes gauge\n",
		"# TYPE go_build_info gauge\n",
		`gridbell_build_info{goversion="go`,
		`version="v1.2.3"} 1`,
		`gridbell_test_seconds_bucket{le="0.25"} 1` + "\n",
		"gridbell_test_seconds_count 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %q in:\n%s", want, got)
		}
	}
}

func BenchmarkCounterVecInc(b *testing.B) {
	c := New().CounterVec("gridbell_sms_total", "SMS.", "kind", "status")
	b.ReportAllocs()
	for b.Loop() {
		c.WithLabelValues("outage", "sent").Inc()
	}
}

func TestSum(t *testing.T) {
	r := New()
	c := r.CounterVec("gridbell_test_events_total", "Events.", "source")
	c.WithLabelValues("mqtt").Add(2)
	c.WithLabelValues("kafka").Add(3)
	if got := r.Sum("gridbell_test_events_total"); got != 5 {
		t.Errorf("Sum = %v, want 5", got)
	}
	if got := r.Sum("gridbell_test_nothing"); got != 0 {
		t.Errorf("Sum of an unknown family = %v, want 0", got)
	}
}
