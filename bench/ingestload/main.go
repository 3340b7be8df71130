// Command ingestload measures gridbell's ingest path end to end: MQTT
// (Mosquitto) → decode → Handler → InfluxSink (a real influxd), and prints
// one table: readings/s through the batch topic and one message per reading,
// CPU-seconds per million readings for gridbell, the publisher, Mosquitto and
// influxd, and peak RSS.
//
// The publisher runs as a child process (this binary with -publish), so its
// CPU is not gridbell's. It keeps at most -window messages ahead of what
// gridbell has handled: Mosquitto queues at most 1000 messages for a client
// (max_queued_messages) and drops beyond that, so an open-loop publisher
// would measure Mosquitto's drops, not gridbell. The Handler is a no-op that
// returns at once (state is the rules' job); a reading counts as done when
// InfluxDB has acknowledged its batch.
//
//	go run ./bench/ingestload [-batch-readings 1000000] [-single-readings 100000]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/ingest/influxtest"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/metrics"
)

const meters = 10000

func main() {
	broker := flag.String("broker", "tcp://127.0.0.1:1883", "MQTT broker (Mosquitto)")
	batchN := flag.Int("batch-readings", 1_000_000, "readings sent through the batch topic")
	batchSize := flag.Int("batch-size", 500, "readings per batch message")
	singleN := flag.Int("single-readings", 100_000, "readings sent one message each")
	publish := flag.Bool("publish", false, "internal: run as the publisher child")
	prefix := flag.String("prefix", "", "internal: topic prefix")
	n := flag.Int("n", 0, "internal: readings to publish")
	per := flag.Int("per", 1, "internal: readings per message (1 = the single topic)")
	window := flag.Int("window", 0, "internal: messages ahead of gridbell")
	mbase := flag.Int("mbase", 0, "internal: first meter number")
	influxBatch := flag.Int("influx-batch", 0, "influx.batch_size (0 = gridbell's default)")
	cpuprofile := flag.String("cpuprofile", "", "write gridbell's CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if *publish {
		if err := runPublisher(*broker, *prefix, *n, *per, *window, *mbase); err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*broker, *batchN, *batchSize, *singleN, *influxBatch); err != nil {
		fmt.Fprintln(os.Stderr, "ingestload:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type result struct {
	name                              string
	readings, msgs                    int
	handled, stored                   time.Duration
	cpuSelf, cpuPub, cpuMosq, cpuInfl float64
	rssSelf, rssInflux                int64
	inInflux                          int
}

func run(broker string, batchN, batchSize, singleN, influxBatch int) error {
	tmp, err := os.MkdirTemp("", "ingestload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	srv, err := influxtest.Launch(filepath.Join(tmp, "influxd"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	var results []result
	for _, sc := range []struct {
		name       string
		n, per, wd int
	}{{"batch topic", batchN, batchSize, 60}, {"one message per reading", singleN, 1, 500}} {
		if sc.n == 0 {
			continue
		}
		r, err := scenario(broker, srv, influxBatch, len(results), filepath.Join(tmp, strconv.Itoa(len(results))), sc.name, sc.n, sc.per, sc.wd)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		results = append(results, r)
	}
	printTable(results)
	return nil
}

// counter is the no-op durable Handler: it counts messages and readings.
type counter struct{ msgs, readings atomic.Int64 }

func (c *counter) Handle(_ context.Context, evs []event.Event) error {
	c.msgs.Add(1)
	c.readings.Add(int64(len(evs)))
	return nil
}

// scenario k publishes meters k×10^11 … k×10^11+9999, so that its points
// can be counted apart from earlier scenarios'.
func scenario(broker string, srv *influxtest.Server, influxBatch, k int, dataDir, name string, n, per, window int) (result, error) {
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	id := rand.Uint64()
	prefix := fmt.Sprintf("gbload%x/ami", id)
	w0 := pointsWritten()
	sink, err := ingest.NewInflux(ingest.InfluxConfig{URL: srv.URL, Bucket: influxtest.Database, BatchSize: influxBatch}, dataDir, nil, log)
	if err != nil {
		return result{}, err
	}
	h := &counter{}
	cfg := ingest.MQTTConfig{Brokers: []string{broker}, ClientID: fmt.Sprintf("gbload-%x", id), TopicPrefix: prefix}
	m := ingest.NewMQTT(cfg, ingest.Limits{}, h, sink, nil, nil, log)
	ctx, cancel := context.WithCancel(context.Background())
	sinkDone, mqttDone := make(chan error, 1), make(chan error, 1)
	go func() { sinkDone <- sink.Run(ctx) }()
	go func() { mqttDone <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-mqttDone
		<-sinkDone
		forgetSession(broker, cfg.ClientID)
	}()
	for deadline := time.Now().Add(10 * time.Second); !m.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("no subscription to %s", broker)
		}
	}

	mosq := pidOf("mosquitto")
	s0, m0, i0 := selfCPU(), procCPU(mosq), procCPU(srv.Pid())
	start := time.Now()
	child, err := startPublisher(broker, prefix, n, per, window, k*1e11, h)
	if err != nil {
		return result{}, err
	}
	r := result{name: name, readings: n, msgs: (n + per - 1) / per}
	if err := waitUntil(5*time.Minute, func() bool { return h.readings.Load() >= int64(n) }); err != nil {
		return r, fmt.Errorf("handled %d of %d readings: %w", h.readings.Load(), n, err)
	}
	r.handled = time.Since(start)
	if err := waitUntil(5*time.Minute, func() bool { return pointsWritten()-w0 >= uint64(n) }); err != nil {
		return r, fmt.Errorf("influx took %d of %d readings: %w", pointsWritten()-w0, n, err)
	}
	r.stored = time.Since(start)
	r.cpuSelf, r.cpuMosq, r.cpuInfl = selfCPU()-s0, procCPU(mosq)-m0, procCPU(srv.Pid())-i0
	if err := child.Wait(); err != nil {
		return r, fmt.Errorf("publisher: %w", err)
	}
	r.cpuPub = child.ProcessState.UserTime().Seconds() + child.ProcessState.SystemTime().Seconds()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r.rssSelf = ru.Maxrss * 1024
	r.rssInflux = procHWM(srv.Pid())
	series, err := srv.Query(fmt.Sprintf(`SELECT COUNT("kwh") FROM "reading" WHERE "meter" =~ /^%d/`, k))
	if err == nil && len(series) > 0 {
		v, _ := series[0].Values[0][1].(float64)
		r.inInflux = int(v)
	}
	all, _ := srv.Count("reading")
	fmt.Fprintf(os.Stderr, "%s: %d points of this scenario, %d in all\n", name, r.inInflux, all)
	return r, nil
}

// startPublisher starts the child and feeds it gridbell's handled-message
// count on stdin, so that it stays at most window messages ahead.
func startPublisher(broker, prefix string, n, per, window, mbase int, h *counter) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-publish", "-broker", broker, "-prefix", prefix,
		"-n", strconv.Itoa(n), "-per", strconv.Itoa(per), "-window", strconv.Itoa(window), "-mbase", strconv.Itoa(mbase))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer in.Close()
		for {
			if _, err := fmt.Fprintln(in, h.msgs.Load()); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return cmd, nil
}

// baseTime is the time of reading 0: readings i are at baseTime + i/meters
// minutes, so that every (meter, time) is distinct and all are in the past.
func baseTime(n int) time.Time {
	return time.Now().UTC().Truncate(time.Minute).Add(-time.Duration(n/meters+60) * time.Minute)
}

func runPublisher(broker, prefix string, n, per, window, mbase int) error {
	var handled atomic.Int64
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if v, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
				handled.Store(v)
			}
		}
	}()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("gbloadpub-%x", rand.Uint64())))
	if tok := c.Connect(); tok.Wait() && tok.Error() != nil {
		return tok.Error()
	}
	defer c.Disconnect(100)
	base := baseTime(n)
	tokens := make(chan paho.Token, 1000)
	errc := make(chan error, 1)
	go func() {
		for tok := range tokens {
			if tok.Wait(); tok.Error() != nil {
				select {
				case errc <- tok.Error():
				default:
				}
			}
		}
		close(errc)
	}()
	var buf []byte
	sent := int64(0)
	for i := 0; i < n; i += per {
		for sent-handled.Load() >= int64(window) {
			time.Sleep(100 * time.Microsecond)
		}
		buf = buf[:0]
		var topic string
		if per == 1 {
			topic = fmt.Sprintf("%s/C%d/%012d/reading", prefix, i%meters/200, mbase+i%meters)
			buf = appendReading(buf, i, mbase, base)
		} else {
			topic = fmt.Sprintf("%s/C%d/readings", prefix, i/per%50)
			buf = append(buf, '[')
			for k := i; k < min(n, i+per); k++ {
				if k > i {
					buf = append(buf, ',')
				}
				buf = appendReading(buf, k, mbase, base)
			}
			buf = append(buf, ']')
		}
		tokens <- c.Publish(topic, 1, false, append([]byte(nil), buf...))
		sent++
	}
	close(tokens)
	return <-errc
}

func appendReading(b []byte, i, mbase int, base time.Time) []byte {
	ts := base.Add(time.Duration(i/meters) * time.Minute).Format(time.RFC3339)
	return fmt.Appendf(b, `{"meter":"%012d","ts":"%s","kwh":%d.%02d,"voltage":221.3,"current":3.2,"power_kw":0.7,"balance":45.2}`,
		mbase+i%meters, ts, i/meters+1000, i%100)
}

func forgetSession(broker, clientID string) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetCleanSession(true))
	if tok := c.Connect(); tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
		c.Disconnect(50)
	}
}

func waitUntil(d time.Duration, cond func() bool) error {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
	}
	return nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// procCPU returns the user+system CPU seconds of pid from /proc, 0 if unknown.
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// procHWM returns a process's peak RSS in bytes from /proc.
func procHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// pidOf finds a running process by its command name, 0 if none.
func pidOf(name string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == name {
			return pid
		}
	}
	return 0
}

func printTable(rs []result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\treadings\tmessages\thandled/s\tin influx/s\tCPU-s/M gridbell\tpublisher\tmosquitto\tinfluxd\tpeak RSS gridbell\tinfluxd\tcounted in influx\t")
	for _, r := range rs {
		perM := func(cpu float64) string { return fmt.Sprintf("%.1f", cpu/float64(r.readings)*1e6) }
		fmt.Fprintf(w, "%s\t%d\t%d\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%d MiB\t%d MiB\t%d\t\n", r.name, r.readings, r.msgs,
			float64(r.readings)/r.handled.Seconds(), float64(r.readings)/r.stored.Seconds(),
			perM(r.cpuSelf), perM(r.cpuPub), perM(r.cpuMosq), perM(r.cpuInfl), r.rssSelf>>20, r.rssInflux>>20, r.inInflux)
	}
	w.Flush()
}

// pointsWritten reads the sink's written counter from the registry that
// /metrics serves.
func pointsWritten() uint64 {
	return uint64(metrics.Default.Sum("gridbell_influx_points_written_total"))
}
