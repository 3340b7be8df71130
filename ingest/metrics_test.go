package ingest

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMQTTConnectionMetrics: the connection gauge follows the broker going
// away, and the loss is counted.
func TestMQTTConnectionMetrics(t *testing.T) {
	b, err := StartBroker("127.0.0.1:0", "", BrokerAuth{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			b.Close()
		}
	}()
	cfg := testMQTTConfig("tcp://" + b.Addr())
	lost0 := testutil.ToFloat64(mqttLost)
	run := startMQTT(t, cfg, newRecorder(), nil, nil)
	if got := testutil.ToFloat64(mqttConnected); got != 1 {
		t.Errorf("gridbell_mqtt_connected = %v once subscribed, want 1", got)
	}
	b.Close() // mochi's Close may not be called twice
	closed = true
	waitFor(t, 10*time.Second, "the loss seen", func() bool { return testutil.ToFloat64(mqttConnected) == 0 })
	if got := testutil.ToFloat64(mqttLost) - lost0; got != 1 {
		t.Errorf("gridbell_mqtt_connection_lost_total rose by %v, want 1", got)
	}
	run.stop(t)
}

func TestLagTracker(t *testing.T) {
	lt := newLagTracker("gbtest.lag")
	g := kafkaLag.WithLabelValues("gbtest.lag")
	lt.set("gbtest.lag", 0, 10)
	lt.set("gbtest.lag", 1, 5)
	lt.set("gbtest.lag", 0, 3)
	if got := testutil.ToFloat64(g); got != 8 {
		t.Errorf("lag after partitions 0:10, 1:5, 0:3 = %v, want 8", got)
	}
	lt.reset()
	lt.set("gbtest.lag", 1, 2)
	if got := testutil.ToFloat64(g); got != 2 {
		t.Errorf("lag after a new generation with partition 1:2 = %v, want 2", got)
	}
}
