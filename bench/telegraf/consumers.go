package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// telegraf is Telegraf with mqtt_consumer + json_v2 → influxdb_v2, set up
// as the reference rig sets it up.
type telegraf struct{ bin string }

func (t *telegraf) name() string { return "telegraf" }

// telegrafConf is the reference rig's configuration: 5,000-metric batches,
// one write in flight, a persistent session that acknowledges a message
// once the output has written it, max_undelivered_messages = 4 batches.
const telegrafConf = `[agent]
  interval = "10s"
  round_interval = false
  collection_jitter = "0s"
  flush_interval = "1s"
  flush_jitter = "0s"
  metric_batch_size = 5000
  metric_buffer_limit = 1000000
  omit_hostname = true
[[inputs.mqtt_consumer]]
  servers = ["%s"]
  topics = ["%s"]
  qos = 1
  persistent_session = true
  client_id = "telegraf-bench-%d"
  topic_tag = ""
  max_undelivered_messages = %d
  data_format = "json_v2"
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "reading"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "@this"
      tags = ["meter"]
      timestamp_key = "ts"
      timestamp_format = "2006-01-02T15:04:05Z07:00"
      timestamp_timezone = "UTC"
      [inputs.mqtt_consumer.json_v2.object.fields]
        kwh = "float"
        voltage = "float"
        current = "float"
        power_kw = "float"
        balance = "float"
[[outputs.influxdb_v2]]
  urls = ["%s"]
  token = "x:y"
  organization = ""
  bucket = "%s"
  content_encoding = "gzip"
  timeout = "30s"
  metric_batch_size = 5000
  metric_buffer_limit = 1000000
`

func (t *telegraf) start(dir, mqttURL, influxURL, database string, w workload) (*proc, error) {
	topic, undelivered := "ami/+/readings", 200
	if w.single {
		topic, undelivered = "ami/+/+/reading", 20000
	}
	conf := filepath.Join(dir, "telegraf.conf")
	body := fmt.Sprintf(telegrafConf, mqttURL, topic, os.Getpid(), undelivered, influxURL, database)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	p, err := spawn(dir, "telegraf", nil, t.bin, "--config", conf)
	if err != nil {
		return nil, err
	}
	// It logs "Connected" just before it subscribes; give the SUBSCRIBE a moment.
	log := filepath.Join(dir, "telegraf.log")
	if err := waitUntil(60*time.Second, func() bool { return p.exited() || logHas(log, "Connected") }); err != nil || p.exited() {
		stop(p)
		return nil, fmt.Errorf("telegraf did not connect (log %s)", log)
	}
	time.Sleep(2 * time.Second)
	return p, nil
}

func logHas(path, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}

// gridbell is `gridbell run` with the rig's Mosquitto and influxd, and
// (contacts) every meter of the fleet in its contacts file.
type gridbell struct {
	bin      string
	contacts bool
	profile  string // a CPU profile of the run is written here; "" none
}

func (g *gridbell) name() string { return "gridbell" }

func (g *gridbell) start(dir, mqttURL, influxURL, database string, w workload) (*proc, error) {
	contacts := ""
	if g.contacts {
		contacts = filepath.Join(dir, "contacts.csv")
		if err := writeContacts(contacts); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "gridbell.yaml")
	body := fmt.Sprintf(`data_dir: %s
contacts_file: %q
http: {listen: "127.0.0.1:%d"}
mqtt:
  brokers: [%q]
  topic_prefix: ami
influx: {url: %q, token: "x:y", org: "bench", bucket: %q}
`, filepath.Join(dir, "gridbell-data"), contacts, port, mqttURL, influxURL, database)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	args := []string{"run", "--config", conf}
	if g.profile != "" {
		args = append(args, "--cpuprofile", g.profile)
	}
	p, err := spawn(dir, "gridbell", nil, g.bin, args...)
	if err != nil {
		return nil, err
	}
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	if err := waitUntil(180*time.Second, func() bool { return p.exited() || httpOK(ready) }); err != nil || p.exited() {
		stop(p)
		return nil, fmt.Errorf("gridbell did not get ready (log in %s)", dir)
	}
	time.Sleep(2 * time.Second)
	return p, nil
}

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writeContacts writes the fleet's contacts file: one customer per meter,
// each concentrator its own transformer area.
func writeContacts(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	b := bufio.NewWriter(f)
	fmt.Fprintln(b, "account,name,meter,concentrator,area,grid,phone")
	for g := range concentrators * metersPer {
		c := g / metersPer
		fmt.Fprintf(b, "01%08d,R%d,%d,%s,TA-%04d,G%02d,139%08d\n", g, g, meterBase+int64(g), concID(c), c, c/100, g)
	}
	if err := b.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
