package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
)

// powerOff returns the topic and payload of meter i's power_off under
// prefix, and the key the recorder knows it by.
func powerOff(prefix string, i int) (topic, payload, key string) {
	ts := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	meter := fmt.Sprintf("M%d", i)
	return fmt.Sprintf("%s/C1/%s/event", prefix, meter),
		fmt.Sprintf(`{"meter":%q,"ts":%q,"type":"power_off"}`, meter, ts.Format(time.RFC3339)),
		eventKey(event.Event{Meter: &event.MeterEvent{Meter: meter, Type: "power_off", TS: ts}})
}

// claim connects a client with client id id (and user, if set) and keeps
// it connected for stay; it returns the connection error, if refused.
func claim(broker, id, user, pass string, clean bool, stay time.Duration) error {
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	if user != "" {
		opts.SetUsername(user).SetPassword(pass)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("connect timed out")
	}
	if tok.Error() != nil {
		return tok.Error()
	}
	time.Sleep(stay)
	c.Disconnect(50)
	return nil
}

// intakeAfter publishes n power_offs from meter from on and waits until h
// has every one: intake works.
func intakeAfter(t *testing.T, pub paho.Client, prefix string, h *recorder, from, n int) {
	t.Helper()
	var keys []string
	for i := from; i < from+n; i++ {
		topic, payload, key := powerOff(prefix, i)
		publish(t, pub, topic, payload)
		keys = append(keys, key)
	}
	waitFor(t, 15*time.Second, fmt.Sprintf("power_offs %d..%d taken", from, from+n-1), func() bool {
		for _, k := range keys {
			if !h.has(k) {
				return false
			}
		}
		return true
	})
}

// TestClientIDReserved: on the embedded broker (state file on, as
// gridbell runs it) a client claiming gridbell's client id is refused,
// with ingest credentials or anonymously on the loopback broker, and
// gridbell's intake goes on; with ingest credentials a client id in use
// takes no other username. Before, such a client took gridbell's session
// over, and gridbell, reconnected, took nothing more.
func TestClientIDReserved(t *testing.T) {
	creds := Credentials{{Username: "headend", Password: "headend-secret-1"}, {Username: "headend2", Password: "headend-secret-2"}}
	for _, withAuth := range []bool{true, false} {
		t.Run(fmt.Sprintf("auth=%v", withAuth), func(t *testing.T) {
			cfg := MQTTConfig{EmbeddedListen: "127.0.0.1:0", TopicPrefix: fmt.Sprintf("gbid%x/ami", rand.Uint64()), MaxInflight: 8}
			if withAuth {
				cfg.EmbeddedAuth.Ingest = creds
			}
			auth, own, err := EmbeddedBrokerAuth(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var logs lockedBuffer
			log := zerolog.New(zerolog.MultiLevelWriter(&logs, zerolog.NewTestWriter(t))).Level(zerolog.WarnLevel)
			b, err := StartBroker(own.EmbeddedListen, filepath.Join(t.TempDir(), "broker.db"), auth, log)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			url := "tcp://" + b.Addr()
			own.Brokers = []string{url}
			h := newRecorder()
			run := startMQTT(t, own, h, nil, nil)
			defer run.stop(t)
			user, pass := "", ""
			if withAuth {
				user, pass = "headend", "headend-secret-1"
			}
			pub, err := connect(url, user, pass, "")
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Disconnect(50)
			intakeAfter(t, pub, own.TopicPrefix, h, 0, 3)

			for _, clean := range []bool{true, false} {
				if err := claim(url, own.ClientID, user, pass, clean, 200*time.Millisecond); err == nil {
					t.Errorf("a client (user %q, clean %v) connected with gridbell's client id %q", user, clean, own.ClientID)
				}
			}
			if !strings.Contains(logs.String(), `"level":"error"`) || !strings.Contains(logs.String(), "claiming gridbell's own client id") {
				t.Errorf("the refused claim of gridbell's client id was not logged as an error:\n%s", logs.String())
			}
			time.Sleep(2 * time.Second) // a reconnect, had gridbell been cut off
			intakeAfter(t, pub, own.TopicPrefix, h, 100, 20)

			if withAuth { // headend's id is bound to headend while it is connected
				opts := pub.OptionsReader()
				if err := claim(url, opts.ClientID(), "headend2", "headend-secret-2", true, 0); err == nil {
					t.Error("headend2 connected with the client id headend is connected with")
				}
				if !pub.IsConnectionOpen() {
					t.Error("headend's connection was taken over by headend2")
				}
			}
		})
	}
}

// TestTakeoverRace: a session taken over while its client reconnects at
// once (mochi sets up both at the same time, and the one registered last
// wins while the other stays connected, delivered nothing) leaves
// gridbell's reconnected session taking messages. Here the id is not
// reserved (BrokerAuth without gridbell's id), so the takeover happens.
func TestTakeoverRace(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			b, err := StartBroker("127.0.0.1:0", filepath.Join(t.TempDir(), "broker.db"), BrokerAuth{}, testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			url := "tcp://" + b.Addr()
			cfg := testMQTTConfig(url)
			h := newRecorder()
			run := startMQTT(t, cfg, h, nil, nil)
			defer run.stop(t)
			pub := publisher(t, url)
			intakeAfter(t, pub, cfg.TopicPrefix, h, 0, 3)
			for round := range 3 {
				if err := claim(url, cfg.ClientID, "", "", clean, 200*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 10*time.Second, "gridbell subscribed again", func() bool {
					cl, ok := b.srv.Clients.Get(cfg.ClientID)
					return ok && !cl.Closed() && cl.State.Subscriptions.Len() > 0
				})
				intakeAfter(t, pub, cfg.TopicPrefix, h, 100*(round+1), 10)
			}
		})
	}
}

// blocker is a Handler that holds every call until released.
type blocker struct {
	*recorder
	release chan struct{}
}

func (b blocker) Handle(ctx context.Context, evs []event.Event) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.recorder.Handle(ctx, evs)
}

// TestIntakeStall: while the broker has traffic for the subscription and
// gridbell takes none (here its handler hangs and the window is full),
// Stalled says so once the stall lasts; once intake resumes it does not.
// The unacknowledged gauge stands at the window.
func TestIntakeStall(t *testing.T) {
	cfg := MQTTConfig{EmbeddedListen: "127.0.0.1:0", TopicPrefix: fmt.Sprintf("gbstall%x/ami", rand.Uint64()), MaxInflight: 4}
	auth, own, err := EmbeddedBrokerAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := StartBroker(own.EmbeddedListen, "", auth, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	own.Brokers = []string{"tcp://" + b.Addr()}
	h := blocker{newRecorder(), make(chan struct{})}
	m := NewMQTT(own, Limits{}, h, nil, nil, nil, testLog(t))
	m.stallAfter = time.Second
	b.Watch(m.Traffic)
	run := goRun(m.Run)
	defer run.stop(t)
	waitFor(t, 10*time.Second, "mqtt subscription", m.Ready)
	pub := publisher(t, own.Brokers[0])
	for i := range 20 {
		topic, payload, _ := powerOff(own.TopicPrefix, i)
		publish(t, pub, topic, payload)
	}
	waitFor(t, 10*time.Second, "the stall reported", func() bool { return m.Stalled() != nil })
	if got := testutil.ToFloat64(mqttUnackedGauge); got != 4 {
		t.Errorf("gridbell_mqtt_unacked_messages = %v while the window of 4 is full", got)
	}
	t.Logf("Stalled: %v", m.Stalled())
	close(h.release)
	waitFor(t, 10*time.Second, "all 20 taken", func() bool { return h.distinct() == 20 })
	if err := m.Stalled(); err != nil {
		t.Errorf("Stalled after intake resumed: %v", err)
	}
}

// TestTakeoverMosquitto: on Mosquitto (which gridbell cannot guard), a
// client connecting with gridbell's client id takes its session over;
// gridbell reconnects, logs the takeover as an error, counts it, and takes
// what comes after.
func TestTakeoverMosquitto(t *testing.T) {
	broker := mosquitto(t)
	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	var logs lockedBuffer
	h := newRecorder()
	m := NewMQTT(cfg, Limits{}, h, nil, nil, nil, zerolog.New(zerolog.MultiLevelWriter(&logs, zerolog.NewTestWriter(t))).Level(zerolog.WarnLevel))
	run := goRun(m.Run)
	defer run.stop(t)
	waitFor(t, 10*time.Second, "mqtt subscription", m.Ready)
	pub := publisher(t, broker)
	intakeAfter(t, pub, cfg.TopicPrefix, h, 0, 3)
	n0 := testutil.ToFloat64(mqttTakeovers)
	for round := range 2 {
		for _, clean := range []bool{true, false} {
			if err := claim(broker, cfg.ClientID, "", "", clean, 200*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "gridbell subscribed again", m.Ready)
			intakeAfter(t, pub, cfg.TopicPrefix, h, 1000*(round+1)+boolInt(clean)*100, 10)
		}
	}
	if got := testutil.ToFloat64(mqttTakeovers) - n0; got < 1 {
		t.Errorf("gridbell_mqtt_session_takeovers_total rose by %v after 4 takeovers", got)
	}
	if !strings.Contains(logs.String(), "mqtt session taken over") {
		t.Errorf("no takeover logged:\n%s", logs.String())
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
