package ingest

import (
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridbell/gridbell/ingest/influxtest"
	"github.com/gridbell/gridbell/internal/event"
)

func f64(v float64) *float64 { return &v }

// testReading returns reading i: a distinct meter and time for every i.
func testReading(i int) event.Reading {
	r := event.Reading{Meter: fmt.Sprintf("M%d", i%500), Concentrator: "C1",
		TS:  time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).Add(time.Duration(i/500) * time.Minute),
		KWh: float64(i) + 0.25}
	if i%2 == 0 {
		r.Voltage, r.Balance = f64(220.5), f64(-3)
	}
	return r
}

type influxRun struct {
	s *InfluxSink
	running
}

func startInflux(t *testing.T, url, dataDir string, spoolMax int64, dir Directory) *influxRun {
	t.Helper()
	cfg := InfluxConfig{URL: url, Bucket: influxtest.Database, BatchSize: 200, FlushEvery: 20 * time.Millisecond, SpoolMaxSize: spoolMax}
	s, err := NewInflux(cfg, dataDir, dir, testLog(t))
	if err != nil || s == nil {
		t.Fatalf("NewInflux = %v, %v", s, err)
	}
	return &influxRun{s: s, running: goRun(s.Run)}
}

func waitCount(t *testing.T, srv *influxtest.Server, want int) {
	t.Helper()
	var n int
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n, err = srv.Count("reading"); err == nil && n == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("influx has %d readings (%v), want %d", n, err, want)
}

func TestInfluxOff(t *testing.T) {
	s, err := NewInflux(InfluxConfig{}, t.TempDir(), nil, testLog(t))
	if s != nil || err != nil {
		t.Fatalf("NewInflux with no URL = %v, %v; want nil, nil", s, err)
	}
}

// A negative batch size or flush period would drop every reading or stop
// Run with a panic: it is refused at start.
func TestInfluxNegativeConfig(t *testing.T) {
	for _, cfg := range []InfluxConfig{{BatchSize: -1}, {FlushEvery: -time.Second}, {SpoolMaxSize: -1}} {
		cfg.URL, cfg.Bucket = "http://127.0.0.1:8086", "gridbell"
		if s, err := NewInflux(cfg, t.TempDir(), nil, testLog(t)); err == nil {
			t.Errorf("NewInflux(%+v) = %v, nil; want an error", cfg, s)
		}
	}
}

func TestInfluxSink(t *testing.T) {
	srv := influxtest.Start(t)
	run := startInflux(t, srv.URL, t.TempDir(), 1<<30, mapDirectory{"M1": "TA-0101"})
	defer run.stop(t)
	for i := range 1000 {
		run.s.Write(testReading(i))
	}
	waitCount(t, srv, 1000)
	series, err := srv.Query(`SELECT * FROM "reading" WHERE "meter" = 'M1' ORDER BY time LIMIT 1`)
	if err != nil || len(series) != 1 {
		t.Fatalf("query M1: %v, %v", series, err)
	}
	row := map[string]any{}
	for i, c := range series[0].Columns {
		row[c] = series[0].Values[0][i]
	}
	want := map[string]any{"time": float64(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixMilli()), "meter": "M1", "area": "TA-0101", "kwh": 1.25, "voltage": nil, "balance": nil}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("M1 %s = %v, want %v (row %v)", k, row[k], v, row)
		}
	}
	series, _ = srv.Query(`SELECT "kwh", "area", "voltage", "balance" FROM "reading" WHERE "meter" = 'M2' ORDER BY time LIMIT 1`)
	if v := series[0].Values[0]; v[2] != nil || v[3] != 220.5 || v[4] != -3.0 {
		t.Errorf("M2 (unknown meter) = %v, want no area, voltage 220.5, balance -3", v)
	}
}

// InfluxDB stops under load and comes back: Write never waits, readings
// spool to disk, and afterwards every one is in InfluxDB exactly once.
func TestInfluxOutage(t *testing.T) {
	srv := influxtest.Start(t)
	data := t.TempDir()
	run := startInflux(t, srv.URL, data, 1<<30, nil)
	w0 := testutil.ToFloat64(run.s.written)
	i := 0
	write := func(n int) time.Duration {
		start := time.Now()
		for range n {
			run.s.Write(testReading(i))
			i++
		}
		return time.Since(start)
	}
	write(2000)
	waitCount(t, srv, 2000)
	srv.Stop()
	for range 10 {
		if d := write(1000); d > 200*time.Millisecond {
			t.Errorf("1000 Writes took %s while influx was down", d)
		}
		time.Sleep(30 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "readings on disk", func() bool { return run.s.spool.bytes() > 0 })

	// gridbell restarts while InfluxDB is still down: the spool carries over.
	run.stop(t)
	run = startInflux(t, srv.URL, data, 1<<30, nil)
	defer run.stop(t)
	write(1000)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, srv, i)
	waitFor(t, 10*time.Second, "an empty spool", func() bool { return run.s.spool.bytes() == 0 })
	if got := testutil.ToFloat64(run.s.written) - w0; got < float64(i) {
		t.Errorf("written counter %v, want at least %d", got, i)
	}
}

// Past the spool cap readings are dropped and counted, never blocking.
func TestInfluxSpoolCap(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // nothing listens: InfluxDB is down
	run := startInflux(t, "http://"+l.Addr().String(), t.TempDir(), 20000, nil)
	defer run.stop(t)
	d0 := testutil.ToFloat64(run.s.dropped)
	for i := range 20000 {
		run.s.Write(testReading(i))
	}
	waitFor(t, 10*time.Second, "drops counted", func() bool { return testutil.ToFloat64(run.s.dropped) > d0 })
	if b := run.s.spool.bytes(); b > 20000 {
		t.Errorf("spool holds %d bytes, over its cap of 20000", b)
	}
}

func TestAppendLine(t *testing.T) {
	f := func(r event.Reading, area, want string) {
		t.Helper()
		if got := string(appendLine(nil, r, area)); got != want+"\n" {
			t.Errorf("appendLine(%+v, %q) = %q, want %q", r, area, got, want)
		}
	}
	ts := time.UnixMilli(1764116100000)
	f(event.Reading{Meter: "M1", TS: ts, KWh: 3}, "", `reading,meter=M1 kwh=3 1764116100000`)
	f(event.Reading{Meter: "M 1,=", TS: ts, KWh: 0.5, Voltage: f64(220.5), Current: f64(math.NaN()), PowerKW: f64(1e21), Balance: f64(-3)},
		"TA 1", `reading,area=TA\ 1,meter=M\ 1\,\= kwh=0.5,voltage=220.5,power_kw=1000000000000000000000,balance=-3 1764116100000`)
	f(event.Reading{Meter: "M1\nX\tY", TS: ts, KWh: 1}, "", `reading,meter=M1\ X\ Y kwh=1 1764116100000`)
}
