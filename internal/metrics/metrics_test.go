package metrics

import (
	"strings"
	"testing"
)

func TestWriteText(t *testing.T) {
	r := New()
	r.Counter("gridbell_rejected_total", "Rejected messages.", "source", "mqtt").Add(3)
	r.Counter("gridbell_rejected_total", "Rejected messages.", "source", "kafka").Inc()
	r.Gauge("gridbell_storm_mode", "1 in storm mode.").Set(1)
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"# TYPE gridbell_rejected_total counter\n",
		`gridbell_rejected_total{source="kafka"} 1` + "\n",
		`gridbell_rejected_total{source="mqtt"} 3` + "\n",
		"gridbell_storm_mode 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("WriteText() lacks %q in:\n%s", want, got)
		}
	}
}

func TestSameSeries(t *testing.T) {
	r := New()
	a := r.Counter("c", "h", "k", "v")
	if b := r.Counter("c", "h", "k", "v"); a != b {
		t.Error("the same name and labels gave two counters")
	}
	if b := r.Counter("c", "h", "k", "w"); a == b {
		t.Error("other labels gave the same counter")
	}
}

func BenchmarkCounterLookup(b *testing.B) {
	r := New()
	b.ReportAllocs()
	for b.Loop() {
		r.Counter("gridbell_sms_total", "SMS.", "kind", "outage", "status", "sent").Inc()
	}
}
