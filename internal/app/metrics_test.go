package app_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// scrapeFreshApp starts an app with every input on (the embedded MQTT
// broker, Kafka on kfake), waits until it is ready, answers one API request
// and returns what GET /metrics then serves.
func scrapeFreshApp(t *testing.T) []byte {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "oms.outages", "billing.accounts"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	dir := t.TempDir()
	contactsFile := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(contactsFile, []byte(contactsCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	cfg, err := config.Load("", []string{
		"GRIDBELL_DATA_DIR=" + filepath.Join(dir, "data"),
		"GRIDBELL_CONTACTS_FILE=" + contactsFile,
		"GRIDBELL_HTTP_LISTEN=" + listen,
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + freePort(t),
		"GRIDBELL_KAFKA_BROKERS=" + strings.Join(kc.ListenAddrs(), ","),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = storetest.Config(t, "sqlite")
	startApp(t, cfg, zerolog.WarnLevel)
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return b
	}
	get("/healthz")
	return get("/metrics")
}

func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not the text format: %v", err)
	}
	return fams
}

// seriesNames are the names a query may use for the families: a
// histogram's _bucket, _sum and _count too.
func seriesNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		}
	}
	return names
}

// TestMetricsOfAFreshApp: a fresh app exposes the Go runtime, process and
// build-info families, every stage's latency histogram, the connection and
// lag gauges, and passes promlint (what `promtool check metrics` checks).
func TestMetricsOfAFreshApp(t *testing.T) {
	body := scrapeFreshApp(t)
	fams := parseMetrics(t, body)
	want := map[string]dto.MetricType{
		"go_goroutines":                          dto.MetricType_GAUGE,
		"go_gc_duration_seconds":                 dto.MetricType_SUMMARY,
		"go_build_info":                          dto.MetricType_GAUGE,
		"process_cpu_seconds_total":              dto.MetricType_COUNTER,
		"process_resident_memory_bytes":          dto.MetricType_GAUGE,
		"gridbell_build_info":                    dto.MetricType_GAUGE,
		"gridbell_rules_event_to_intent_seconds": dto.MetricType_HISTOGRAM,
		"gridbell_rules_decision_lag_seconds":    dto.MetricType_HISTOGRAM,
		"gridbell_sms_intent_to_sent_seconds":    dto.MetricType_HISTOGRAM,
		"gridbell_sms_sent_to_delivered_seconds": dto.MetricType_HISTOGRAM,
		"gridbell_sms_send_duration_seconds":     dto.MetricType_HISTOGRAM,
		"gridbell_http_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"gridbell_http_requests_total":           dto.MetricType_COUNTER,
		"gridbell_kafka_consumer_lag":            dto.MetricType_GAUGE,
		"gridbell_mqtt_connected":                dto.MetricType_GAUGE,
		"gridbell_ready":                         dto.MetricType_GAUGE,
		"gridbell_sms_total":                     dto.MetricType_COUNTER,
		"gridbell_sms_queue_depth":               dto.MetricType_GAUGE,
		"gridbell_ingest_rejected_total":         dto.MetricType_COUNTER,
		"gridbell_contacts_valid_list_ratio":     dto.MetricType_GAUGE,
		"gridbell_unknown_meter_readings_total":  dto.MetricType_COUNTER,
		"gridbell_influx_spool_bytes":            dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("/metrics of a fresh app lacks %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want a %v", name, f.GetType(), typ)
		}
	}
	one := func(name string) float64 {
		ms := fams[name].GetMetric()
		if len(ms) != 1 {
			t.Fatalf("%s has %d series, want 1", name, len(ms))
		}
		return ms[0].GetGauge().GetValue()
	}
	if v := one("gridbell_mqtt_connected"); v != 1 {
		t.Errorf("gridbell_mqtt_connected = %v in a ready app, want 1", v)
	}
	if v := one("gridbell_ready"); v != 1 {
		t.Errorf("gridbell_ready = %v in a ready app, want 1", v)
	}
	if v := one("gridbell_contacts_valid_list_ratio"); v <= 0 || v > 1 {
		t.Errorf("gridbell_contacts_valid_list_ratio = %v, want a share in (0, 1]", v)
	}
	// Series that exist before their first event: every kind of SMS.
	if n := len(fams["gridbell_sms_sent_to_delivered_seconds"].GetMetric()); n != 9 {
		t.Errorf("gridbell_sms_sent_to_delivered_seconds has %d series, want one per SMS kind (9)", n)
	}
	for _, m := range fams["gridbell_kafka_consumer_lag"].GetMetric() {
		if m.GetGauge().GetValue() != 0 {
			t.Errorf("lag of an empty topic: %v", m)
		}
	}
	checkDocumented(t, fams)
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if path := promtool(t); path != "" {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
}

// documentedMetric is a row of docs/metrics.md's tables.
var documentedMetric = regexp.MustCompile("(?m)^\\| `(gridbell_[a-z0-9_]+)` \\| ([a-z]+) \\|")

// checkDocumented: docs/metrics.md lists every gridbell family with its
// type, and no family gridbell does not expose.
func checkDocumented(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	raw, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, m := range documentedMetric.FindAllStringSubmatch(string(raw), -1) {
		documented[m[1]] = m[2]
		if fams[m[1]] == nil {
			t.Errorf("docs/metrics.md lists %s, which gridbell does not expose", m[1])
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "gridbell_") {
			continue
		}
		want := strings.ToLower(f.GetType().String())
		if got, ok := documented[name]; !ok {
			t.Errorf("docs/metrics.md does not list %s", name)
		} else if got != want {
			t.Errorf("docs/metrics.md says %s is a %s, it is a %s", name, got, want)
		}
	}
}
