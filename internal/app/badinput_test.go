package app_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gridbell/gridbell/internal/config"
)

// corpus is testdata/badinput (see its README.md).
const corpus = "../../testdata/badinput"

// badPayloads are the files of corpus/reject and the inputs too big to
// keep in the repository, made here.
func badPayloads(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpus, "reject", "*"))
	if err != nil || len(files) < 10 {
		t.Fatalf("corpus: %v, %v", files, err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	out["gen:oversized"] = append([]byte(`{"meter":"`), bytes.Repeat([]byte("x"), 1<<20)...)
	out["gen:20000-bad-elements"] = []byte("[{}" + strings.Repeat(",{}", 19999) + "]")
	out["gen:deep-nesting"] = []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))
	return out
}

// TestBadInputCorpus replays the bad-input corpus through every way in:
// MQTT (all four topic forms), Kafka (both topics), HTTP (both endpoints)
// and the contacts CSV (at start and over HTTP). Every bad message is
// rejected, counted and kept as exactly one dead letter; hostile text that
// is valid is stored and comes out escaped (JSON) and neutralised (CSV);
// the process stays up and ready throughout.
func TestBadInputCorpus(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "oms.outages", "billing.accounts"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	dir := t.TempDir()
	hostile, err := os.ReadFile(filepath.Join(corpus, "contacts", "accept-names.csv"))
	if err != nil {
		t.Fatal(err)
	}
	contactsFile := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(contactsFile, append([]byte(contactsCSV), hostile...), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "corpus-admin-token-0123456789"
	listen, broker := freePort(t), freePort(t)
	cfg, err := config.Load("", []string{
		"GRIDBELL_DATA_DIR=" + filepath.Join(dir, "data"),
		"GRIDBELL_CONTACTS_FILE=" + contactsFile,
		"GRIDBELL_HTTP_LISTEN=" + listen,
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + broker,
		"GRIDBELL_KAFKA_BROKERS=" + strings.Join(kc.ListenAddrs(), ","),
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_AUTH_TOKENS=" + token + ":admin",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg, zerolog.ErrorLevel)
	ctx := t.Context()
	customers := a.Contacts.Len()

	api := func(method, path, ctype string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+listen+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("corpus-pub"))
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	kcl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer kcl.Close()

	sent := 0
	for name, p := range badPayloads(t) {
		for _, topic := range []string{"ami/C-1/330000000001/reading", "ami/C-1/readings", "ami/C-1/330000000001/event", "ami/C-1/event"} {
			if tok := pub.Publish(topic, 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish %s to %s: %v", name, topic, tok.Error())
			}
			sent++
		}
		if name != "gen:oversized" { // over Kafka's message size: the producer refuses it
			for _, topic := range []string{"oms.outages", "billing.accounts"} {
				if err := kcl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(name), Value: p}).FirstErr(); err != nil {
					t.Fatalf("produce %s to %s: %v", name, topic, err)
				}
				sent++
			}
		}
		for _, path := range []string{"/api/v1/oms/events", "/api/v1/billing/events"} {
			code, body := api("POST", path, "application/json", p)
			if code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge {
				t.Errorf("POST %s %s = %d %.200s, want 400 or 413", path, name, code, body)
			}
			sent++
		}
		if a.Ready() != nil {
			t.Fatalf("not ready after %s: %v", name, a.Ready())
		}
	}
	waitFor(t, fmt.Sprintf("%d dead letters, one per message", sent), 60*time.Second, func() bool {
		n, _ := a.Dead.Count(ctx)
		return n >= sent
	})
	if n, _ := a.Dead.Count(ctx); n != sent {
		t.Errorf("%d dead letters for %d rejected messages, want one each", n, sent)
	}
	code, metrics := api("GET", "/metrics", "", nil)
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	rejected := map[string]float64{} // by source
	for _, m := range parseMetrics(t, metrics)["gridbell_ingest_rejected_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "source" {
				rejected[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	for _, src := range []string{"mqtt", "kafka", "http"} {
		if rejected[src] == 0 {
			t.Errorf("/metrics counts no %s rejections", src)
		}
	}

	// Contacts files with no valid row are refused; the registry stays.
	bad, _ := filepath.Glob(filepath.Join(corpus, "contacts", "reject-*.csv"))
	for _, f := range bad {
		b, _ := os.ReadFile(f)
		if code, body := api("POST", "/api/v1/contacts/import", "text/csv", b); code != http.StatusBadRequest {
			t.Errorf("import %s = %d %.300s, want 400", filepath.Base(f), code, body)
		}
	}
	if a.Contacts.Len() != customers {
		t.Errorf("registry has %d customers after the refused imports, had %d", a.Contacts.Len(), customers)
	}

	// One OMS event naming 20,000 made-up areas is refused whole: no storm
	// mode, nothing of it kept but its dead letter.
	areas := make([]string, 20000)
	for i := range areas {
		areas[i] = fmt.Sprintf("TA-FAKE-%05d", i)
	}
	flood, _ := json.Marshal(map[string]any{"outage_id": "OMS-FLOOD", "kind": "fault", "status": "started", "areas": areas,
		"start": time.Now().Format(time.RFC3339), "updated_at": time.Now().Format(time.RFC3339)})
	if code, body := api("POST", "/api/v1/oms/events", "application/json", flood); code != http.StatusBadRequest || !bytes.Contains(body, []byte("ingest.max_areas")) {
		t.Errorf("20,000 areas = %d %.300s, want 400 naming ingest.max_areas", code, body)
	}
	if a.Rules.StormMode() {
		t.Error("storm mode on after an OMS event of made-up areas")
	}
	if _, body := api("GET", "/api/v1/outages/OMS-FLOOD", "", nil); bytes.Contains(body, []byte("TA-FAKE")) {
		t.Errorf("the refused outage is kept: %.200s", body)
	}

	// Hostile text that is valid: stored, escaped in JSON, neutralised in CSV.
	raw, _ := os.ReadFile(filepath.Join(corpus, "accept", "oms-hostile-text.json"))
	now := time.Now()
	ev := strings.NewReplacer("{{now}}", now.Format(time.RFC3339), "{{in2h}}", now.Add(2*time.Hour).Format(time.RFC3339)).Replace(string(raw))
	if code, body := api("POST", "/api/v1/oms/events", "application/json", []byte(ev)); code != http.StatusAccepted {
		t.Fatalf("hostile but valid OMS event = %d %s", code, body)
	}
	// The JSON carries the text as it came (the page escapes it when it
	// shows it), as JSON a browser will not sniff into HTML.
	id := "<img src=x onerror=alert(1)>"
	var outages struct {
		Outages []struct{ ID, Cause string } `json:"outages"`
	}
	waitFor(t, "the hostile outage listed", 20*time.Second, func() bool {
		_, list := api("GET", "/api/v1/outages?status=active", "", nil)
		return json.Unmarshal(list, &outages) == nil && len(outages.Outages) == 1
	})
	if o := outages.Outages[0]; o.ID != id || !strings.HasSuffix(o.Cause, "<script>alert(1)</script>") {
		t.Errorf("outage stored as %+v", o)
	}
	req, _ := http.NewRequest("GET", "http://"+listen+"/api/v1/outages?status=active", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("outage list answered %v, %v: want application/json with nosniff", resp.Header, err)
	} else {
		resp.Body.Close()
	}
	code, csvBody := api("GET", "/api/v1/outages/"+url.PathEscape(id)+"/customers?format=csv", "", nil)
	rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(csvBody, []byte("\xef\xbb\xbf")))).ReadAll()
	if code != 200 || err != nil || len(rows) < 6 {
		t.Fatalf("customers CSV = %d, %v: %s", code, err, csvBody)
	}
	names := 0
	for _, r := range rows[1:] {
		for _, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("CSV cell %q would run in a spreadsheet", cell)
			}
			if strings.HasPrefix(cell, "'=HYPERLINK") || strings.HasPrefix(cell, "'+cmd") || strings.HasPrefix(cell, "'@SUM") {
				names++
			}
		}
	}
	if names != 3 {
		t.Errorf("%d neutralised formula names in the CSV, want 3:\n%s", names, csvBody)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := api("GET", path, "", nil); code != 200 {
			t.Errorf("GET %s = %d %s after the corpus", path, code, body)
		}
	}
}
