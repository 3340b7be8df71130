package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

// The fleet: TA-1 (concentrator C-1) and TA-2 (C-2), four meters each.
// Account 0100000004 has no usable phone; 0100000005 is a landline.
const contactsCSV = `account,name,meter,concentrator,area,feeder,grid,manager,manager_phone,class,prepaid,phone,language
0100000001,Li Lei,330000000001,C-1,TA-1,F-1,G01,Wang,13900000001,resident,false,138 1234 5601,zh
0100000002,Han Meimei,330000000002,C-1,TA-1,F-1,G01,Wang,13900000001,resident,false,+86 138-1234-5602,en
0100000003,City Hospital,330000000003,C-1,TA-1,F-1,G01,Wang,13900000001,high_risk,false,13812345603,zh
0100000004,Zhao,330000000004,C-1,TA-1,F-1,G01,Wang,13900000001,resident,false,无,zh
0100000005,Qian,330000000005,C-2,TA-2,F-1,G02,Sun,13900000002,resident,false,0769-22345678,zh
0100000006,Sun,330000000006,C-2,TA-2,F-1,G02,Sun,13900000002,resident,false,13812345606,zh
0100000007,Zhou,330000000007,C-2,TA-2,F-1,G02,Sun,13900000002,resident,true,13812345607,zh
0100000008,Wu,330000000008,C-2,TA-2,F-1,G02,Sun,13900000002,commercial,false,13812345608,zh
`

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type outboxLine struct {
	To, Account, Kind, Ref, Body string
}

func readOutbox(t *testing.T, path string) []outboxLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	// the service may be appending while we read: a last line without its
	// newline is still being written, not torn
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var out []outboxLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l outboxLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("outbox line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// needMosquitto fails (CI) or skips the test when no broker answers at addr.
func needMosquitto(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		storetest.Missing(t, "mosquitto", err)
	} else {
		c.Close()
	}
}

// newKafka starts a kfake cluster with the OMS and billing topics, closed
// when the test ends.
func newKafka(t *testing.T) *kfake.Cluster {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "oms.outages", "billing.accounts"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

// startApp starts the service on cfg, logging at level to the test, and
// waits until it is ready; it is stopped, and Run's error checked, when the
// test ends.
func startApp(t *testing.T, cfg *config.Config, level zerolog.Level) *app.App {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(level))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	waitFor(t, "readiness", 30*time.Second, func() bool { return a.Ready() == nil })
	return a
}

// mqttPublisher connects a QoS 1 publisher to broker and returns a func
// publishing v as JSON to prefix/topic; it disconnects when the test ends.
func mqttPublisher(t *testing.T, broker, prefix string) func(topic string, v any) {
	t.Helper()
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("%s-pub-%d", prefix, time.Now().UnixNano())))
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { pub.Disconnect(100) })
	return func(topic string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if tok := pub.Publish(prefix+"/"+topic, 1, false, b); tok.Wait() && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
}

// fleetConcentrator is the concentrator of meter i (1-8) of contactsCSV.
func fleetConcentrator(i int) string {
	if i > 4 {
		return "C-2"
	}
	return "C-1"
}

// publishReadings sends a reading of every meter of contactsCSV stamped ts.
func publishReadings(publish func(string, any), ts string) {
	for i := 1; i <= 8; i++ {
		publish(fmt.Sprintf("%s/33000000000%d/reading", fleetConcentrator(i), i), map[string]any{
			"meter": fmt.Sprintf("33000000000%d", i), "ts": ts, "kwh": 100.5 + float64(i)})
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func count(lines []outboxLine, kind, ref string) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		if l.Kind == kind && (ref == "" || l.Ref == ref) {
			m[l.To]++
		}
	}
	return m
}

// TestEndToEnd runs the whole service: meter events over a real MQTT broker
// (Mosquitto) and OMS events over Kafka (kfake) in, the outbox file out.
func TestEndToEnd(t *testing.T) {
	for _, driver := range storetest.Backends {
		t.Run(driver, func(t *testing.T) { testEndToEnd(t, driver) })
	}
}

func testEndToEnd(t *testing.T, driver string) {
	const broker = "127.0.0.1:1883"
	needMosquitto(t, broker)
	kc := newKafka(t)

	dir := t.TempDir()
	contactsFile := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(contactsFile, []byte(contactsCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("e2e%d", time.Now().UnixNano())
	listen := freePort(t)
	env := []string{
		"GRIDBELL_DATA_DIR=" + filepath.Join(dir, "data"),
		"GRIDBELL_CONTACTS_FILE=" + contactsFile,
		"GRIDBELL_HTTP_LISTEN=" + listen,
		"GRIDBELL_MQTT_BROKERS=tcp://" + broker,
		"GRIDBELL_MQTT_TOPIC_PREFIX=" + prefix,
		"GRIDBELL_MQTT_CLIENT_ID=" + prefix,
		"GRIDBELL_KAFKA_BROKERS=" + strings.Join(kc.ListenAddrs(), ","),
		"GRIDBELL_KAFKA_GROUP=" + prefix,
		"GRIDBELL_RULES_MOMENTARY=2s",
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_AUTH_TOKENS=admintok-0123456789:admin,mgr1-token-0123456789:manager:G01",
	}
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = storetest.Config(t, driver)
	startApp(t, cfg, zerolog.InfoLevel)
	ctx := t.Context()

	publish := mqttPublisher(t, "tcp://"+broker, prefix)
	now := time.Now()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }

	// Everyone powered, then TA-1's concentrator last gasp: after the 2 s
	// momentary window the area is out.
	publishReadings(publish, ts(-time.Minute))
	publish("C-1/event", map[string]any{"concentrator": "C-1", "ts": ts(0), "type": "power_off"})

	// The OMS declares a fault in TA-2 over Kafka.
	omsEvent := func(status string, at time.Duration) *kgo.Record {
		v, _ := json.Marshal(map[string]any{"outage_id": "OMS-E2E-1", "kind": "fault", "status": status,
			"areas": []string{"TA-2"}, "feeders": []string{}, "meters": []string{},
			"start": ts(0), "etr": ts(2 * time.Hour), "cause": "test", "updated_at": ts(at)})
		return &kgo.Record{Topic: "oms.outages", Key: []byte("OMS-E2E-1"), Value: v}
	}
	kcl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer kcl.Close()
	if err := kcl.ProduceSync(ctx, omsEvent("started", time.Second)).FirstErr(); err != nil {
		t.Fatal(err)
	}

	outbox := filepath.Join(cfg.DataDir, "outbox.jsonl")
	waitFor(t, "outage SMS for both areas", 30*time.Second, func() bool {
		l := readOutbox(t, outbox)
		return len(count(l, "outage", "")) >= 5
	})

	// TA-2: power back for two of its meters, then the OMS says restored.
	for _, m := range []string{"330000000006", "330000000007"} {
		publish("C-2/"+m+"/event", map[string]any{"meter": m, "ts": ts(10 * time.Second), "type": "power_on"})
	}
	if err := kcl.ProduceSync(ctx, omsEvent("restored", 20*time.Second)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "restored SMS", 30*time.Second, func() bool {
		return len(count(readOutbox(t, outbox), "restored", "OMS-E2E-1")) >= 2
	})
	time.Sleep(time.Second) // let anything wrongly queued show up

	lines := readOutbox(t, outbox)
	outage := count(lines, "outage", "")
	for _, phone := range []string{"+8613812345601", "+8613812345602", "+8613812345603", "+8613812345606", "+8613812345607", "+8613812345608"} {
		if outage[phone] != 1 {
			t.Errorf("outage SMS to %s: %d, want exactly 1 (all: %v)", phone, outage[phone], outage)
		}
	}
	if n := outage["+8676922345678"]; n != 0 {
		t.Errorf("a landline got %d outage SMS", n)
	}
	restored := count(lines, "restored", "OMS-E2E-1")
	if restored["+8613812345606"] != 1 || restored["+8613812345607"] != 1 || restored["+8613812345608"] != 0 {
		t.Errorf("restored SMS = %v, want one each to ...606 and ...607 and none to ...608 (still dark)", restored)
	}

	// The API: the OMS outage is still active (a meter is dark) and the
	// verification names the dark meter.
	get := func(path, token string, v any) int {
		req, _ := http.NewRequest("GET", "http://"+listen+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			json.NewDecoder(resp.Body).Decode(v)
		}
		return resp.StatusCode
	}
	if code := get("/api/v1/outages", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/outages without token = %d, want 401", code)
	}
	var ver struct {
		Dark []struct{ Meter, Account string } `json:"dark"`
	}
	if code := get("/api/v1/outages/OMS-E2E-1/verification", "admintok-0123456789", &ver); code != 200 {
		t.Fatalf("verification = %d", code)
	}
	var dark []string
	for _, d := range ver.Dark {
		dark = append(dark, d.Meter)
	}
	if strings.Join(dark, ",") != "330000000005,330000000008" {
		t.Errorf("still dark = %v, want 330000000005 and 330000000008", dark)
	}
	var one struct {
		Status string
		Counts struct{ Affected, Notified, Dark int }
	}
	get("/api/v1/outages/OMS-E2E-1", "admintok-0123456789", &one)
	if one.Status != "active" || one.Counts.Affected != 4 || one.Counts.Dark != 2 || one.Counts.Notified < 3 {
		t.Errorf("outage = %+v, want active, 4 affected, 2 dark, ≥3 notified", one)
	}
	// OMS-E2E-1 holds no G01 customer: to the G01 manager it does not exist.
	if code := get("/api/v1/outages/OMS-E2E-1/customers?grid=G02", "mgr1-token-0123456789", nil); code != http.StatusNotFound {
		t.Errorf("manager of G01 reading an outage of G02 only = %d, want 404", code)
	}
	var q struct {
		Grids []struct{ Grid string } `json:"grids"`
	}
	if code := get("/api/v1/contacts/quality", "mgr1-token-0123456789", &q); code != 200 || len(q.Grids) != 1 || q.Grids[0].Grid != "G01" {
		t.Errorf("quality for the G01 manager = %d %+v, want G01 only", code, q.Grids)
	}
	var cust struct {
		Customers []struct {
			Account, Status string
			Phones          []string
			Powered         bool
		} `json:"customers"`
	}
	if code := get("/api/v1/outages/OMS-E2E-1/customers", "admintok-0123456789", &cust); code != 200 || len(cust.Customers) != 4 {
		t.Fatalf("customers = %d, %d customers, want 4", code, len(cust.Customers))
	}
	for _, c := range cust.Customers {
		for _, p := range c.Phones {
			if !strings.Contains(p, "****") {
				t.Errorf("customer list shows an unmasked phone %q", p)
			}
		}
		if c.Account == "0100000005" && !strings.Contains(c.Status, "landline") {
			t.Errorf("landline customer's status = %q, want it to say why nothing was sent", c.Status)
		}
	}
	post := func(path, token, body string) int {
		req, _ := http.NewRequest("POST", "http://"+listen+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/api/v1/outages/OMS-E2E-1/confirm", "mgr1-token-0123456789", `{}`); code != http.StatusForbidden {
		t.Errorf("a manager confirming = %d, want 403", code)
	}
	// Two meters are still dark: no confirmation without a reason.
	if code := post("/api/v1/outages/OMS-E2E-1/confirm", "admintok-0123456789", `{"by":"dispatcher 7"}`); code != http.StatusConflict {
		t.Errorf("confirm with meters dark and no reason = %d, want 409", code)
	}
	if code := post("/api/v1/outages/OMS-E2E-1/confirm", "admintok-0123456789", `{"by":"dispatcher 7","reason":"crew on site"}`); code != 200 {
		t.Errorf("confirm with a reason = %d, want 200", code)
	}
	var confirmed struct {
		Status         string
		ConfirmedBy    string `json:"confirmed_by"`
		NeedsAttention bool   `json:"needs_attention"`
	}
	get("/api/v1/outages/OMS-E2E-1", "admintok-0123456789", &confirmed)
	if confirmed.Status == "active" || confirmed.ConfirmedBy != "admin-token-1" || !confirmed.NeedsAttention {
		t.Errorf("after the confirmation = %+v, want closed, confirmed by the token's name (not the body's), needing attention", confirmed)
	}
	// The OMS now reports TA-1, which the meters found first, over HTTP:
	// one record (source both), and each customer counted once.
	body := fmt.Sprintf(`[{"outage_id":"OMS-E2E-2","kind":"fault","status":"started","areas":["TA-1"],
		"start":%q,"etr":%q,"updated_at":%q},{"outage_id":"","status":"started"}]`, ts(0), ts(3*time.Hour), ts(30*time.Second))
	req, _ := http.NewRequest("POST", "http://"+listen+"/api/v1/oms/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admintok-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		t.Errorf("POST a batch with one good and one bad element = %d, want 207 naming the bad one", resp.StatusCode)
	}
	for _, m := range []string{"330000000001", "330000000002", "330000000003", "330000000004"} {
		publish("C-1/"+m+"/event", map[string]any{"meter": m, "ts": ts(40 * time.Second), "type": "power_on"})
	}
	waitFor(t, "restored SMS for TA-1", 30*time.Second, func() bool {
		return len(count(readOutbox(t, outbox), "restored", "")) >= 5
	})
	var merged struct {
		Source string
		Counts struct{ Affected, Notified, Restored, Dark int }
	}
	if code := get("/api/v1/outages/OMS-E2E-2", "admintok-0123456789", &merged); code != 200 {
		t.Fatalf("GET merged outage = %d", code)
	}
	if merged.Source != "both" || merged.Counts.Notified != 3 || merged.Counts.Dark != 0 {
		t.Errorf("merged outage = %+v, want source both, 3 customers notified once each, none dark", merged)
	}
	var dls struct {
		DeadLetters []struct{ Reason string } `json:"dead_letters"`
	}
	if code := get("/api/v1/deadletters", "admintok-0123456789", &dls); code != 200 || len(dls.DeadLetters) == 0 {
		t.Errorf("dead letters = %d %+v, want the bad OMS element kept", code, dls)
	}
	req, _ = http.NewRequest("POST", "http://"+listen+"/api/v1/deadletters/replay", strings.NewReader(`{"ids":[]}`))
	req.Header.Set("Authorization", "Bearer admintok-0123456789")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var replay struct{ Requested, Replayed int }
	json.NewDecoder(resp.Body).Decode(&replay)
	resp.Body.Close()
	if resp.StatusCode != 200 || replay.Requested != len(dls.DeadLetters) || replay.Replayed != 0 {
		t.Errorf("replay = %d %+v, want all %d requested and none replayed (still bad)", resp.StatusCode, replay, len(dls.DeadLetters))
	}
	if code := get("/healthz", "", nil); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code := get("/readyz", "", nil); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
}

// TestNewFailsCleanly: a component that cannot start (the embedded broker's
// port is taken) makes New return an error naming it, not panic, and what
// was already open is closed again (the store can be reopened at once).
func TestNewFailsCleanly(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg, err := config.Load("", []string{
		"GRIDBELL_DATA_DIR=" + dir,
		"GRIDBELL_HTTP_LISTEN=" + freePort(t),
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + taken.Addr().String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, zerolog.Nop())
	if err == nil || a != nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("New() = %v, %v; want no app and an error naming %s", a, err, taken.Addr())
	}
	dl, closeFn, err := app.OpenDeadLetters(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("store not released after the failed New: %v", err)
	}
	if _, err := dl.List(context.Background(), 1); err != nil {
		t.Error(err)
	}
	closeFn()
}

// TestMissingContactsFileStarts: a contacts_file that is not there (a
// Kubernetes ConfigMap marked optional) warns and starts with the stored
// registry instead of stopping the service; a file that is there but
// unreadable as contacts still stops it.
func TestMissingContactsFileStarts(t *testing.T) {
	dir := t.TempDir()
	load := func(file string) *config.Config {
		cfg, err := config.Load("", []string{
			"GRIDBELL_DATA_DIR=" + dir,
			"GRIDBELL_CONTACTS_FILE=" + file,
			"GRIDBELL_HTTP_LISTEN=" + freePort(t),
			"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + freePort(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var logs strings.Builder
	a, err := app.New(context.Background(), load(filepath.Join(dir, "absent.csv")), zerolog.New(&logs))
	if err != nil {
		t.Fatalf("New() with a missing contacts_file = %v, want it to start", err)
	}
	a.Run(canceled()) // closes what New opened
	if !strings.Contains(logs.String(), "contacts_file does not exist") {
		t.Errorf("no warning about the missing contacts_file in:\n%s", logs.String())
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("no,such,columns\n1,2,3\n"), 0o600)
	if a, err := app.New(context.Background(), load(bad), zerolog.Nop()); err == nil {
		a.Run(canceled())
		t.Error("New() with a contacts_file lacking the required columns started; want an error")
	}
}
