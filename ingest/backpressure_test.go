package ingest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridbell/gridbell/ingest/influxtest"
)

// gate is a proxy in front of a real influxd that holds every write until
// it opens: an InfluxDB that is up but takes nothing.
type gate struct {
	open chan struct{}
	once sync.Once
	held atomic.Int32
	*httptest.Server
}

// release opens the gate for good.
func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func newGate(t *testing.T, influxURL string) *gate {
	target, err := url.Parse(influxURL)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{open: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(target)
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "write") {
			g.held.Add(1)
			select {
			case <-g.open:
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(g.Close)
	t.Cleanup(g.release) // first: Close waits for the held writes
	return g
}

// steady waits until n() stops moving and returns its value.
func steady(n func() int) int {
	last := n()
	for {
		time.Sleep(300 * time.Millisecond)
		now := n()
		if now == last {
			return now
		}
		last = now
	}
}

// TestMQTTBackpressure: while InfluxDB takes nothing, MQTT intake pauses
// after a bounded number of readings (the rest wait in the broker, not in
// gridbell's memory); once it takes writes again, every reading is handed
// on and lands in InfluxDB exactly once.
func TestMQTTBackpressure(t *testing.T) {
	broker := mosquitto(t)
	srv := influxtest.Start(t)
	g := newGate(t, srv.URL)
	sink, err := NewInflux(InfluxConfig{URL: g.URL, Bucket: influxtest.Database, BatchSize: 10, FlushEvery: 20 * time.Millisecond},
		t.TempDir(), nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	sinkRun := goRun(sink.Run)
	defer sinkRun.stop(t)

	cfg := testMQTTConfig(broker)
	t.Cleanup(func() { forgetSession(broker, cfg.ClientID) })
	h := newRecorder()
	m := NewMQTT(cfg, Limits{}, h, sink, nil, nil, testLog(t))
	run := goRun(m.Run)
	defer run.stop(t)
	waitFor(t, 10*time.Second, "mqtt subscription", m.Ready)

	const n = 400
	pub := publisher(t, broker)
	ts := time.Now().UTC().Add(-time.Hour)
	for i := range n {
		publish(t, pub, fmt.Sprintf("%s/C1/M%d/reading", cfg.TopicPrefix, i),
			fmt.Sprintf(`{"meter":"M%d","ts":"%s","kwh":%d}`, i, ts.Format(time.RFC3339), i))
	}
	waitFor(t, 10*time.Second, "a write held at the gate", func() bool { return g.held.Load() > 0 })
	// The sink holds waitBatches batches; each worker may pass waitRoom
	// with one window's worth before it fills.
	bound := (waitBatches+1)*10 + mqttWorkers*cfg.MaxInflight
	if got := steady(h.distinct); got >= n || got > bound {
		t.Fatalf("intake went on while InfluxDB took nothing: %d of %d readings handed on, want at most %d", got, n, bound)
	}
	g.release()
	waitFor(t, 30*time.Second, "every reading handed on", func() bool { return h.distinct() == n })
	waitCount(t, srv, n)
}
