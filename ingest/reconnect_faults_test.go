//go:build faults

package ingest

import (
	"testing"
	"time"

	"github.com/gridbell/gridbell/internal/faults"
)

// TestFaultMosquittoReconnectBound restarts a private Mosquitto
// (persistence on) three times briefly and then after 20 s away: each time
// gridbell is subscribed again within 10 s of the broker's return
// (reconnect attempts at most mqttReconnectMax apart, however long it was
// away), and takes what is published then. Before, the back-off grew to
// 16–30 s after a long absence.
func TestFaultMosquittoReconnectBound(t *testing.T) {
	mq := faults.StartMosquitto(t)
	cfg := testMQTTConfig(mq.URL())
	h := newRecorder()
	m := NewMQTT(cfg, Limits{}, h, nil, nil, nil, testLog(t))
	run := goRun(m.Run)
	defer run.stop(t)
	waitFor(t, 10*time.Second, "mqtt subscription", m.Ready)
	for i, away := range []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second, 20 * time.Second} {
		mq.Stop()
		waitFor(t, 10*time.Second, "the loss seen", func() bool { return !m.Ready() })
		time.Sleep(away)
		mq.Start()
		back := time.Now()
		waitFor(t, 10*time.Second, "subscribed again within 10 s of the broker's return", m.Ready)
		t.Logf("restart %d (away %s): subscribed again %s after the broker's return", i+1, away, time.Since(back).Round(10*time.Millisecond))
		pub := publisher(t, mq.URL())
		intakeAfter(t, pub, cfg.TopicPrefix, h, 100*i, 5)
		pub.Disconnect(50)
	}
}
