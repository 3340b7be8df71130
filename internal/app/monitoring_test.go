package app_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	dashboardFile = "../../deploy/grafana/gridbell.json"
	alertsFile    = "../../deploy/prometheus/alerts.yaml"
	scrapeFile    = "../../deploy/prometheus/prometheus.yml"
)

// metricName finds the metric names a PromQL expression uses.
var metricName = regexp.MustCompile(`\b(?:gridbell|go|process)_[a-zA-Z0-9_]+`)

// promtool returns the path of promtool, or "" when it is not installed
// (which fails the test under CI=true: .ci/run installs it).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is required under CI=true: %v", err)
		}
		t.Logf("promtool not installed: its checks are left out (%v)", err)
	}
	return path
}

type grafanaTarget struct {
	RefID      string            `json:"refId"`
	Datasource map[string]string `json:"datasource"`
	Expr       string            `json:"expr"`  // Prometheus
	Query      string            `json:"query"` // InfluxQL
}

type grafanaPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource map[string]string        `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []grafanaTarget          `json:"targets"`
}

type grafanaDashboard struct {
	Title      string         `json:"title"`
	UID        string         `json:"uid"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestMonitoringFiles: the Grafana dashboard and the Prometheus alert rules
// in deploy/ are well formed, and every metric they query is one a running
// gridbell exposes.
func TestMonitoringFiles(t *testing.T) {
	exposed := seriesNames(parseMetrics(t, scrapeFreshApp(t)))
	uses := func(where, expr string) {
		t.Helper()
		for _, name := range metricName.FindAllString(expr, -1) {
			if !exposed[name] {
				t.Errorf("%s uses %s, which gridbell does not expose", where, name)
			}
		}
	}
	exprs := checkDashboard(t)
	for where, expr := range exprs {
		uses(where, expr)
	}
	for where, expr := range checkAlerts(t) {
		uses(where, expr)
	}
	if path := promtool(t); path != "" {
		if out, err := exec.Command(path, "check", "rules", alertsFile).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
		if out, err := exec.Command(path, "check", "config", scrapeFile).CombinedOutput(); err != nil {
			t.Errorf("promtool check config: %v\n%s", err, out)
		}
	}
	checkScrapeConfig(t)
}

// checkScrapeConfig: the shipped scrape configuration scrapes gridbell
// under the job the alert rules name and loads those rules.
func checkScrapeConfig(t *testing.T) {
	raw, err := os.ReadFile(scrapeFile)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName     string `yaml:"job_name"`
			MetricsPath string `yaml:"metrics_path"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", scrapeFile, err)
	}
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	jobs := regexp.MustCompile(`job="([^"]+)"`).FindAllStringSubmatch(string(alerts), -1)
	if len(jobs) == 0 {
		t.Fatalf("%s names no job", alertsFile)
	}
	for _, j := range jobs {
		found := false
		for _, sc := range c.ScrapeConfigs {
			found = found || (sc.JobName == j[1] && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics"))
		}
		if !found {
			t.Errorf("%s scrapes no job %q on /metrics, which %s expects", scrapeFile, j[1], alertsFile)
		}
	}
	if !slices.Contains(c.RuleFiles, filepath.Base(alertsFile)) {
		t.Errorf("%s loads rule files %v, not %s", scrapeFile, c.RuleFiles, filepath.Base(alertsFile))
	}
}

// checkDashboard checks the dashboard's shape and returns its Prometheus
// expressions by where they are.
func checkDashboard(t *testing.T) map[string]string {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard title %q, uid %q, %d panels: want all set", d.Title, d.UID, len(d.Panels))
	}
	sources := map[string]string{} // "${NAME}" → plugin
	exprs := map[string]string{}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			sources["${"+v.Name+"}"], _ = v.Query.(string)
		case "query":
			q, _ := v.Query.(map[string]any)
			s, _ := q["query"].(string)
			exprs["variable "+v.Name] = s
		}
	}
	if sources["${DS_PROMETHEUS}"] != "prometheus" || sources["${DS_INFLUXDB}"] != "influxdb" {
		t.Errorf("datasource variables = %v, want DS_PROMETHEUS (prometheus) and DS_INFLUXDB (influxdb)", sources)
	}
	ids := map[int]bool{}
	kinds := map[string]int{}
	for _, p := range d.Panels {
		where := "panel " + p.Title
		if p.Type == "" || p.Title == "" || ids[p.ID] || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: type %q, id %d (repeated: %v), gridPos %+v", where, p.Type, p.ID, ids[p.ID], p.GridPos)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		plugin := sources[p.Datasource["uid"]]
		if plugin == "" || p.Datasource["type"] != plugin {
			t.Errorf("%s: datasource %v is not one of the dashboard's datasource variables", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s has no targets", where)
		}
		kinds[plugin]++
		for _, tg := range p.Targets {
			if tg.RefID == "" || tg.Datasource["uid"] != p.Datasource["uid"] {
				t.Errorf("%s: target %+v lacks a refId or has another datasource", where, tg)
			}
			switch plugin {
			case "prometheus":
				if tg.Expr == "" {
					t.Errorf("%s: target %s has no expr", where, tg.RefID)
				}
				exprs[where+" "+tg.RefID] = tg.Expr
			case "influxdb":
				checkInfluxQL(t, where, tg.Query)
			}
		}
	}
	if kinds["prometheus"] == 0 || kinds["influxdb"] == 0 {
		t.Errorf("panels by datasource = %v, want Prometheus and InfluxDB panels", kinds)
	}
	return exprs
}

var (
	influxFrom   = regexp.MustCompile(`FROM "([^"]+)"`)
	influxFields = regexp.MustCompile(`"([a-z_]+)"`)
)

// checkInfluxQL checks that an InfluxQL query reads what gridbell writes:
// measurement reading, tags meter and area, the reading's fields.
func checkInfluxQL(t *testing.T, where, q string) {
	t.Helper()
	if !strings.HasPrefix(q, "SELECT ") || !strings.Contains(q, "$timeFilter") {
		t.Errorf("%s: %q is not a time-filtered SELECT", where, q)
	}
	if m := influxFrom.FindStringSubmatch(q); m == nil || m[1] != "reading" {
		t.Errorf("%s: %q does not read measurement reading", where, q)
	}
	known := []string{"reading", "meter", "area", "kwh", "voltage", "current", "power_kw", "balance"}
	for _, m := range influxFields.FindAllStringSubmatch(q, -1) {
		if !slices.Contains(known, m[1]) {
			t.Errorf("%s: %q names %q, which gridbell does not write", where, q, m[1])
		}
	}
}

// checkAlerts checks the rules' shape and returns their expressions by
// alert name.
func checkAlerts(t *testing.T) map[string]string {
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	exprs := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" || exprs["alert "+r.Alert] != "" {
				t.Errorf("rule %+v: want a unique alert name and an expr", r)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a summary or description", r.Alert)
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("alert %s: unbalanced parentheses in %q", r.Alert, r.Expr)
			}
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	// What an operator must act on, each by the metric that shows it.
	for alert, metric := range map[string]string{
		"GridbellNotReady":           "gridbell_ready",
		"GridbellSMSNotSending":      "gridbell_sms_queue_depth",
		"GridbellOutageSMSSlow":      "gridbell_sms_intent_to_sent_seconds_bucket",
		"GridbellKafkaLag":           "gridbell_kafka_consumer_lag",
		"GridbellInfluxSpoolGrowing": "gridbell_influx_spool_bytes",
		"GridbellTwilioErrors":       "gridbell_sms_send_duration_seconds_count",
		"GridbellMQTTDisconnected":   "gridbell_mqtt_connected",
	} {
		if !strings.Contains(exprs["alert "+alert], metric) {
			t.Errorf("alert %s is missing or does not use %s", alert, metric)
		}
	}
	return exprs
}
