//go:build faults

package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/ingest/influxtest"
	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/faults"
	"github.com/gridbell/gridbell/internal/store"
)

// metricValue reads one unlabelled gauge or counter from the service's
// /metrics at addr.
func metricValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := parseMetrics(t, body)[name]
	if !ok || len(f.GetMetric()) == 0 {
		t.Fatalf("/metrics has no %s", name)
	}
	m := f.GetMetric()[0]
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// TestFaultInfluxDown stops a private influxd for a minute while every
// meter of the fleet sends a reading about every 300 ms over MQTT (some
// 2,000 readings a second), then starts it again. The readings of that
// minute wait in the spool; in the end InfluxDB holds every reading
// published, and none was dropped.
func TestFaultInfluxDown(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: influxd is down for a minute")
	}
	srv := influxtest.Start(t)
	r := startFaultRun(t, store.Config{Driver: "sqlite"}, "",
		"GRIDBELL_INFLUX_URL="+srv.URL, "GRIDBELL_INFLUX_BUCKET="+influxtest.Database)
	dropped0 := metricValue(t, r.http, "gridbell_influx_points_dropped_total")

	var published atomic.Int64
	stop := make(chan struct{})
	var load sync.WaitGroup
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	load.Go(func() {
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			ts := base.Add(time.Duration(round) * time.Second).Format(time.RFC3339)
			for a := range faultAreas {
				batch := make([]map[string]any, 0, faultPerArea)
				for j := range faultPerArea {
					batch = append(batch, map[string]any{"meter": fmt.Sprintf("33%010d", a*faultPerArea+j), "ts": ts, "kwh": float64(round) + 0.5})
				}
				r.publish(fmt.Sprintf("C-%03d/readings", a), batch)
			}
			published.Add(faultN)
			time.Sleep(300 * time.Millisecond)
		}
	})

	time.Sleep(10 * time.Second)
	atStop := published.Load()
	srv.Stop()
	var peak float64
	for range 60 {
		time.Sleep(time.Second)
		peak = max(peak, metricValue(t, r.http, "gridbell_influx_spool_bytes"))
	}
	duringOutage := published.Load() - atStop
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	close(stop)
	load.Wait()
	want := int(published.Load())

	var got int
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if n, err := srv.Count("reading"); err == nil {
			if got = n; got >= want {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	dropped := metricValue(t, r.http, "gridbell_influx_points_dropped_total") - dropped0
	t.Logf("influxd down 60 s: %d readings published in all, %d while it was down; spool peak %.0f bytes; InfluxDB holds %d (lost %d); dropped %v",
		want, duringOutage, peak, got, want-got, dropped)
	if got != want {
		t.Errorf("InfluxDB holds %d readings, want every one of the %d published", got, want)
	}
	if peak == 0 {
		t.Error("the spool gauge never rose while influxd was down: the outage proved nothing")
	}
	if dropped != 0 {
		t.Errorf("%v readings dropped", dropped)
	}
}

// serviceChildEnv, set in a child's environment, makes TestServiceChild run
// the service from the GRIDBELL_* variables until SIGTERM or SIGKILL.
const serviceChildEnv = "FAULT_SERVICE_CHILD"

// TestServiceChild is the service process of TestFaultSIGKILL; it is
// skipped unless run as that child.
func TestServiceChild(t *testing.T) {
	if os.Getenv(serviceChildEnv) == "" {
		t.Skip("runs only as TestFaultSIGKILL's child")
	}
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GRIDBELL_") {
			env = append(env, kv)
		}
	}
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// service is the whole service in a child process, killed and restarted
// on one data_dir and one broker session.
type serviceProc struct {
	t    *testing.T
	env  []string
	http string
	log  string
	cmd  *exec.Cmd
}

func (s *serviceProc) start() time.Duration {
	s.t.Helper()
	t0 := time.Now()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServiceChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), serviceChildEnv+"=1"), s.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	for {
		if resp, err := http.Get("http://" + s.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0)
			}
		}
		if time.Since(t0) > 30*time.Second {
			s.t.Fatalf("the service was not ready 30 s after start; see %s", s.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to go.
func (s *serviceProc) kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// stop ends the service with SIGTERM, as an operator would.
func (s *serviceProc) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		s.t.Errorf("the service did not stop cleanly: %v; see %s", err, s.log)
	}
}

// TestFaultSIGKILL runs the whole service in a child process and kills it
// with SIGKILL three times during an outage of the whole fleet: in the
// middle of the power_off burst, while the outage SMS are sent, and while
// the restored SMS are sent; each time it is started again on the same
// data_dir and broker session. No SMS may be lost. With the outbox file as
// sender there is no lookup, so a message in flight at a kill may go
// twice: at most workers × 8 (64) a kill.
func TestFaultSIGKILL(t *testing.T) {
	broker := faults.StartMosquitto(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	s := &serviceProc{t: t, http: freePort(t), log: filepath.Join(dir, "service.log")}
	s.env = faultEnv(t, dir, dataDir, broker.URL(), s.http)
	t.Logf("started, ready in %s", s.start())
	defer func() {
		if s.cmd != nil && s.cmd.ProcessState == nil {
			s.stop()
		}
	}()
	r := &faultRun{t: t, broker: broker, outbox: filepath.Join(dataDir, "outbox.jsonl"), pub: faultPublisher(t, broker.URL()), prefix: "ami"}
	kills := 0
	killAndRestart := func(phase string) {
		before := len(readOutbox(t, r.outbox))
		s.kill()
		kills++
		t.Logf("%s: SIGKILL with %d SMS in the outbox file; ready again %s after the restart", phase, before, s.start())
	}
	sending := func(kind string) {
		deadline := time.Now().Add(30 * time.Second)
		for len(count(readOutbox(t, r.outbox), kind, "")) < faultN/3 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}

	r.burst("power_off", time.Now(), func() { killAndRestart("power_off burst") })
	sending("outage")
	killAndRestart("sending outage SMS")
	r.waitSMS("outage")
	r.burst("power_on", time.Now(), nil)
	sending("restored")
	killAndRestart("sending restored SMS")
	r.waitSMS("restored")
	const perKill = 8 * 8 // notify's default workers × in flight per worker
	dups := smsVerdict(t, r.outbox, kills*perKill)
	t.Logf("%d kills: duplicated outage %d, restored %d (bound %d)", kills, dups["outage"], dups["restored"], kills*perKill)
}
