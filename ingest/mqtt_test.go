package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store/storetest"
)

const mosquittoAddr = "127.0.0.1:1883"

// mosquitto returns the broker URL of the test Mosquitto, or skips.
func mosquitto(t testing.TB) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", mosquittoAddr, time.Second)
	if err != nil {
		storetest.Missing(t, "mosquitto", err)
	}
	c.Close()
	return "tcp://" + mosquittoAddr
}

// embedded starts a mochi broker on a free port.
func embedded(t testing.TB) string {
	t.Helper()
	b, err := StartBroker("127.0.0.1:0", "", BrokerAuth{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return "tcp://" + b.Addr()
}

func publisher(t testing.TB, broker string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("gbpub-%x", rand.Uint64()))
	c := paho.NewClient(opts)
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() != nil || !c.IsConnected() {
		t.Fatalf("cannot connect publisher to %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t testing.TB, c paho.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// forgetSession removes a persistent session from the broker.
func forgetSession(broker, clientID string) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetCleanSession(true))
	if tok := c.Connect(); tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
		c.Disconnect(50)
	}
}

func startMQTT(t testing.TB, cfg MQTTConfig, h Handler, dl *DeadLetters, dir Directory) running {
	t.Helper()
	m := NewMQTT(cfg, Limits{}, h, nil, dl, dir, testLog(t))
	r := goRun(m.Run)
	waitFor(t, 10*time.Second, "mqtt subscription", m.Ready)
	return r
}

func testMQTTConfig(broker string) MQTTConfig {
	id := rand.Uint64()
	return MQTTConfig{Brokers: []string{broker}, ClientID: fmt.Sprintf("gbtest-%x", id),
		TopicPrefix: fmt.Sprintf("gbtest%x/ami", id), MaxInflight: 8}
}

func TestMQTT(t *testing.T) {
	for name, broker := range map[string]func(testing.TB) string{"mochi": embedded, "mosquitto": mosquitto} {
		t.Run(name, func(t *testing.T) { testMQTTRoundTrip(t, broker(t)) })
	}
}

// testMQTTRoundTrip sends every topic form and every kind of malformed
// message; the good events reach the Handler, the bad ones are dead-lettered
// and counted, and the input keeps running.
func testMQTTRoundTrip(t *testing.T, broker string) {
	ctx := context.Background()
	dl, err := OpenDeadLetters(ctx, storetest.Open(t, "sqlite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	h := newRecorder()
	h.fails = 2 // the store is briefly down: the message is retried, not lost
	run := startMQTT(t, cfg, h, dl, mapDirectory{"M1": "TA-1"})
	defer run.stop(t)
	p, pub := cfg.TopicPrefix, publisher(t, broker)

	unknown := unknownReadings
	u0 := testutil.ToFloat64(unknown)
	bad := []struct{ topic, payload string }{
		{p + "/C1/M1/reading", `{"meter":"M1","ts":"2026-11-26T08:15:00Z"}`},         // missing kwh
		{p + "/C1/M1/reading", `{"meter":"M1","ts":"yesterday","kwh":1}`},            // bad time
		{p + "/C1/M1/reading", `{"meter":"M1","ts":"2099-01-01T00:00:00Z","kwh":1}`}, // future
		{p + "/C1/M1/reading", `{"meter":"M1",`},                                     // bad json
		{p + "/C1/M1/event", `{"meter":"M1","ts":"2026-11-26T08:15:00Z","type":"boom"}`},
		{p + "/C1/M1/status", `{}`},
		{p + "/C1/readings", `[{"meter":"M7","ts":"2026-11-26T08:15:00Z","kwh":"7"}]`},
		{p + "/C1/readings", "[" + strings.Repeat(" ", 1<<20) + "]"}, // over the 1 MiB limit
	}
	rej0 := testutil.ToFloat64(rejectedCounter(SourceMQTT, ReasonMissing))
	for _, b := range bad {
		publish(t, pub, b.topic, b.payload)
	}
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(i int) string { return now.Add(time.Duration(-i) * time.Second).Format(time.RFC3339) }
	publish(t, pub, p+"/C1/M1/reading", `{"meter":"M1","ts":"`+ts(1)+`","kwh":1,"balance":12.5}`)
	publish(t, pub, p+"/C1/readings", `[{"meter":"M2","ts":"`+ts(2)+`","kwh":2},{"meter":"M3","ts":"`+ts(3)+`","kwh":3}]`)
	publish(t, pub, p+"/C1/M1/event", `{"meter":"M1","ts":"`+ts(4)+`","type":"power_off"}`)
	publish(t, pub, p+"/C1/event", `{"concentrator":"C1","ts":"`+ts(5)+`","type":"power_on"}`)

	waitFor(t, 10*time.Second, "5 events", func() bool { return h.distinct() == 5 })
	waitFor(t, 10*time.Second, "8 dead letters", func() bool { n, _ := dl.Count(ctx); return n == 8 })
	for _, e := range h.events() {
		if e.Reading != nil && e.Reading.Concentrator != "C1" {
			t.Errorf("reading without its concentrator: %+v", e.Reading)
		}
	}
	if got := testutil.ToFloat64(unknown) - u0; got != 2 {
		t.Errorf("unknown meter readings = %v, want 2 (M2, M3)", got)
	}
	if got := testutil.ToFloat64(rejectedCounter(SourceMQTT, ReasonMissing)) - rej0; got != 1 {
		t.Errorf("missing_field rejections = %v, want 1", got)
	}
	letters, _ := dl.List(ctx, 10)
	for _, l := range letters {
		if l.Source != SourceMQTT || l.Topic == "" || l.Reason == "" || len(l.Raw) == 0 {
			t.Errorf("incomplete dead letter %+v", l)
		}
	}
}

// While gridbell is down, the broker keeps the persistent session's
// messages; on restart they are delivered, and the subscription restored.
func TestMQTTPersistentSession(t *testing.T) {
	broker := mosquitto(t)
	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	h := newRecorder()
	run := startMQTT(t, cfg, h, nil, nil)
	run.stop(t)

	pub := publisher(t, broker)
	ts := time.Now().UTC().Format(time.RFC3339)
	for i := range 20 {
		publish(t, pub, fmt.Sprintf("%s/C1/M%d/reading", cfg.TopicPrefix, i), fmt.Sprintf(`{"meter":"M%d","ts":"%s","kwh":%d}`, i, ts, i))
	}
	run = startMQTT(t, cfg, h, nil, nil)
	defer run.stop(t)
	waitFor(t, 10*time.Second, "20 readings sent while down", func() bool { return h.distinct() == 20 })
	publish(t, pub, cfg.TopicPrefix+"/C1/M99/reading", `{"meter":"M99","ts":"`+ts+`","kwh":1}`)
	waitFor(t, 10*time.Second, "a reading after restart", func() bool { return h.distinct() == 21 })
}

// Two instances in one shared group split the load and together see all.
func TestMQTTSharedSubscription(t *testing.T) {
	broker := mosquitto(t)
	cfg := testMQTTConfig(broker)
	cfg.SharedGroup = fmt.Sprintf("g%x", rand.Uint64())
	cfg2 := cfg
	cfg2.ClientID += "-2"
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID); forgetSession(broker, cfg2.ClientID) })
	h1, h2 := newRecorder(), newRecorder()
	r1 := startMQTT(t, cfg, h1, nil, nil)
	defer r1.stop(t)
	r2 := startMQTT(t, cfg2, h2, nil, nil)
	defer r2.stop(t)
	pub := publisher(t, broker)
	ts := time.Now().UTC().Format(time.RFC3339)
	for i := range 40 {
		publish(t, pub, fmt.Sprintf("%s/C1/M%d/reading", cfg.TopicPrefix, i), fmt.Sprintf(`{"meter":"M%d","ts":"%s","kwh":%d}`, i, ts, i))
	}
	waitFor(t, 10*time.Second, "40 readings across the group", func() bool { return h1.distinct()+h2.distinct() == 40 })
	if h1.distinct() == 0 || h2.distinct() == 0 {
		t.Errorf("shared group did not share: %d and %d", h1.distinct(), h2.distinct())
	}
}

// A message whose events could not be stored is not acknowledged: after a
// restart the broker delivers it again.
func TestMQTTAckOnlyAfterHandle(t *testing.T) {
	broker := mosquitto(t)
	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	down := newRecorder()
	down.fails = 1 << 30
	run := startMQTT(t, cfg, down, nil, nil)
	pub := publisher(t, broker)
	ts := time.Now().UTC().Format(time.RFC3339)
	publish(t, pub, cfg.TopicPrefix+"/C1/M1/reading", `{"meter":"M1","ts":"`+ts+`","kwh":1}`)
	waitFor(t, 10*time.Second, "a failing Handle call", func() bool { down.mu.Lock(); defer down.mu.Unlock(); return down.calls > 0 })
	run.stop(t)

	up := newRecorder()
	run = startMQTT(t, cfg, up, nil, nil)
	defer run.stop(t)
	waitFor(t, 10*time.Second, "the unacknowledged reading again", func() bool { return up.has("r/M1/" + fmt.Sprint(mustTime(t, ts).UnixMilli())) })
}

func mustTime(t testing.TB, s string) time.Time {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// slow is a Handler that takes a while to store.
type slow struct {
	*recorder
	started chan struct{}
}

func (s *slow) Handle(ctx context.Context, evs []event.Event) error {
	close(s.started)
	time.Sleep(300 * time.Millisecond)
	return s.recorder.Handle(ctx, evs)
}

// A stop while a message is in hand finishes and acknowledges it: the next
// run does not get it again.
func TestMQTTCleanStop(t *testing.T) {
	broker := mosquitto(t)
	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	h := &slow{recorder: newRecorder(), started: make(chan struct{})}
	run := startMQTT(t, cfg, h, nil, nil)
	pub := publisher(t, broker)
	ts := time.Now().UTC().Format(time.RFC3339)
	publish(t, pub, cfg.TopicPrefix+"/C1/M1/reading", `{"meter":"M1","ts":"`+ts+`","kwh":1}`)
	<-h.started
	run.stop(t)
	if h.distinct() != 1 {
		t.Fatal("the message in hand was not finished")
	}
	again := newRecorder()
	run = startMQTT(t, cfg, again, nil, nil)
	defer run.stop(t)
	publish(t, pub, cfg.TopicPrefix+"/C1/M2/reading", `{"meter":"M2","ts":"`+ts+`","kwh":1}`)
	waitFor(t, 10*time.Second, "the next reading", func() bool { return again.distinct() >= 1 })
	time.Sleep(200 * time.Millisecond)
	if again.has("r/M1/" + fmt.Sprint(mustTime(t, ts).UnixMilli())) {
		t.Error("the message finished at stop was delivered again: it was not acknowledged")
	}
}
