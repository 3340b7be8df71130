// Command soak runs gridbell (the built binary, `gridbell run`) for a long
// time under steady load and watches it for leaks: every minute it samples
// the process's resident memory, goroutines, open file descriptors and the
// size of its store, and at the end it prints one table of the samples.
//
// Load: a fleet of -meters meters in areas of 50, every meter sending
// readings over MQTT (the embedded broker, batches of 100) at -rate readings
// a second in all, copied to a private influxd when one is found; and every
// -outage-every one area goes dark (power_off from each meter), then comes
// back 60 s later (power_on), which sends outage and restored SMS (to the
// outbox file). Retention is set to -retention, so finished outages, SMS and
// dead letters are pruned during the run and the store should stay flat.
//
//	go run ./bench/soak [-duration 30m] [-rate 5000]
//
// Not part of CI: it takes as long as -duration. docs/reliability.md records
// its table with the machine and the date.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridbell/gridbell/ingest/influxtest"
)

const perArea = 50

func main() {
	duration := flag.Duration("duration", 30*time.Minute, "how long the load runs")
	rate := flag.Int("rate", 5000, "readings a second, in all")
	nMeters := flag.Int("meters", 10000, "meters in the fleet")
	outageEvery := flag.Duration("outage-every", 3*time.Minute, "how often an area goes dark (and comes back 60 s later)")
	sampleEvery := flag.Duration("sample-every", time.Minute, "how often the process is sampled")
	retention := flag.Duration("retention", 10*time.Minute, "gridbell's retention during the soak")
	bin := flag.String("bin", "", "the gridbell binary (default: built from ./cmd/gridbell)")
	noInflux := flag.Bool("no-influx", false, "do not copy readings to a private influxd")
	flag.Parse()
	if err := run(*duration, *rate, *nMeters, *outageEvery, *sampleEvery, *retention, *bin, !*noInflux); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// sample is one row of the table.
type sample struct {
	at         time.Duration
	rssMiB     float64
	goroutines float64
	fds        int
	dbMiB      float64
	readings   int64
	outages    int
	sms        int
	spoolMiB   float64
}

func run(duration time.Duration, rate, nMeters int, outageEvery, sampleEvery, retention time.Duration, bin string, influx bool) error {
	dir, err := os.MkdirTemp("", "gridbell-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "gridbell")
		build := exec.Command("go", "build", "-o", bin, "./cmd/gridbell")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("cannot build gridbell: %w", err)
		}
	}
	dataDir := filepath.Join(dir, "data")
	contacts := filepath.Join(dir, "contacts.csv")
	if err := writeContacts(contacts, nMeters); err != nil {
		return err
	}
	httpAddr, mqttAddr := freeAddr(), freeAddr()
	env := []string{
		"GRIDBELL_DATA_DIR=" + dataDir,
		"GRIDBELL_CONTACTS_FILE=" + contacts,
		"GRIDBELL_HTTP_LISTEN=" + httpAddr,
		"GRIDBELL_MQTT_EMBEDDED_LISTEN=" + mqttAddr,
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_RETENTION=" + retention.String(),
	}
	if influx {
		srv, err := influxtest.Launch(filepath.Join(dir, "influxd"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak: no influxd, readings are not copied:", err)
		} else {
			defer srv.Stop()
			env = append(env, "GRIDBELL_INFLUX_URL="+srv.URL, "GRIDBELL_INFLUX_BUCKET="+influxtest.Database)
		}
	}
	logf, err := os.Create(filepath.Join(os.TempDir(), "gridbell-soak.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if err := waitReady(httpAddr, time.Minute); err != nil {
		return fmt.Errorf("%w (log: %s)", err, logf.Name())
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("soak-pub").
		SetAutoReconnect(true).SetConnectRetry(true))
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		return fmt.Errorf("cannot connect to the embedded broker: %w", tok.Error())
	}
	defer pub.Disconnect(100)

	l := &load{pub: pub, meters: nMeters, rate: rate, dark: -1, start: time.Now()}
	fmt.Printf("soak: %s at %d readings/s, %d meters, an outage every %s, retention %s; gridbell pid %d, log %s\n",
		duration, rate, nMeters, outageEvery, retention, cmd.Process.Pid, logf.Name())
	var rows []sample
	take := func(at time.Duration) {
		s := sample{at: at, readings: l.sent, outages: l.outages, fds: countFDs(cmd.Process.Pid), rssMiB: rssMiB(cmd.Process.Pid),
			dbMiB: dbMiB(dataDir), sms: countLines(filepath.Join(dataDir, "outbox.jsonl"))}
		m := scrape(httpAddr)
		s.goroutines, s.spoolMiB = m["go_goroutines"], m["gridbell_influx_spool_bytes"]/(1<<20)
		rows = append(rows, s)
		fmt.Printf("%6s  rss %6.1f MiB  goroutines %5.0f  fds %4d  db %6.2f MiB  readings %9d  outages %3d  sms %5d  spool %5.1f MiB\n",
			at.Round(time.Second), s.rssMiB, s.goroutines, s.fds, s.dbMiB, s.readings, s.outages, s.sms, s.spoolMiB)
	}
	start := l.start
	take(0)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	nextSample, nextOutage := start.Add(sampleEvery), start.Add(outageEvery/2)
	var restoreAt time.Time
	for now := range tick.C {
		if now.Sub(start) >= duration {
			break
		}
		if err := l.readings(now); err != nil {
			return err
		}
		switch {
		case l.dark < 0 && now.After(nextOutage):
			if err := l.powerOff(now); err != nil {
				return err
			}
			restoreAt, nextOutage = now.Add(time.Minute), nextOutage.Add(outageEvery)
		case l.dark >= 0 && now.After(restoreAt):
			if err := l.powerOn(now); err != nil {
				return err
			}
		}
		if now.After(nextSample) {
			take(now.Sub(start))
			nextSample = nextSample.Add(sampleEvery)
		}
	}
	take(time.Since(start))
	printTable(rows, rate, duration)
	return nil
}

// load publishes the fleet's readings and outages.
type load struct {
	pub     paho.Client
	meters  int
	rate    int
	start   time.Time
	next    int   // next meter to read
	dark    int   // the area out now; -1 = none
	due     int64 // readings due since start, dark meters' included
	sent    int64 // readings published
	outages int
	pending []paho.Token
}

func meterID(k int) string { return fmt.Sprintf("33%010d", k) }
func conc(a int) string    { return fmt.Sprintf("C-%04d", a) }

// readings publishes the readings due by now (rate × time since start,
// so a slow tick is caught up, at most a second's worth at once), in
// batches of up to 100, one concentrator each, leaving out the dark area's
// meters (a reading is evidence of power).
func (l *load) readings(now time.Time) error {
	want := int64(now.Sub(l.start).Seconds() * float64(l.rate))
	n := int(min(want-l.due, int64(l.rate)))
	l.due = max(l.due+int64(n), want-int64(l.rate))
	ts := now.UTC().Format(time.RFC3339Nano)
	for n > 0 {
		byConc := map[int][]map[string]any{}
		for i := 0; i < min(n, 100); i++ {
			k := l.next
			l.next = (l.next + 1) % l.meters
			if k/perArea == l.dark {
				continue
			}
			byConc[k/perArea] = append(byConc[k/perArea], map[string]any{"meter": meterID(k), "ts": ts, "kwh": float64(l.sent%100000) + 0.5, "voltage": 220.1})
		}
		for a, batch := range byConc {
			b, _ := json.Marshal(batch)
			l.pending = append(l.pending, l.pub.Publish("ami/"+conc(a)+"/readings", 1, false, b))
			l.sent += int64(len(batch))
		}
		n -= 100
	}
	// Up to maxPending messages may wait for their acknowledgement: the
	// publisher does not stall on each one, and gridbell's flow control
	// still slows it when gridbell falls behind.
	for len(l.pending) > maxPending {
		if t := l.pending[0]; !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			return fmt.Errorf("cannot publish readings: %v", t.Error())
		}
		l.pending = l.pending[1:]
	}
	return nil
}

// maxPending bounds the reading messages published and not yet acknowledged.
const maxPending = 200

func (l *load) event(now time.Time, typ string) error {
	a := l.dark
	for k := a * perArea; k < min((a+1)*perArea, l.meters); k++ {
		b, _ := json.Marshal(map[string]any{"meter": meterID(k), "ts": now.UTC().Format(time.RFC3339Nano), "type": typ})
		if t := l.pub.Publish("ami/"+conc(a)+"/"+meterID(k)+"/event", 1, false, b); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			return fmt.Errorf("cannot publish %s: %v", typ, t.Error())
		}
	}
	return nil
}

// powerOff darkens the next area in turn.
func (l *load) powerOff(now time.Time) error {
	l.dark = l.outages % (l.meters / perArea)
	l.outages++
	return l.event(now, "power_off")
}

func (l *load) powerOn(now time.Time) error {
	err := l.event(now, "power_on")
	l.dark = -1
	return err
}

func writeContacts(path string, n int) error {
	var b bytes.Buffer
	b.WriteString("account,meter,concentrator,area,grid,manager,manager_phone,class,phone\n")
	for k := range n {
		a := k / perArea
		fmt.Fprintf(&b, "01%08d,%s,%s,TA-%04d,G%02d,mgr,13900000000,resident,138%08d\n", k, meterID(k), conc(a), a, a%20, k+1)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("gridbell not ready after %s", d)
}

// scrape returns the unlabelled samples of /metrics.
func scrape(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		if f := strings.Fields(line); len(f) == 2 {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func countFDs(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(es)
}

// dbMiB is the store's size on disk: the SQLite file with its WAL.
func dbMiB(dataDir string) float64 {
	var n int64
	for _, f := range []string{"gridbell.db", "gridbell.db-wal", "gridbell.db-shm"} {
		if st, err := os.Stat(filepath.Join(dataDir, f)); err == nil {
			n += st.Size()
		}
	}
	return float64(n) / (1 << 20)
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF || err != nil {
			return n
		}
	}
}

func printTable(rows []sample, rate int, duration time.Duration) {
	fmt.Printf("\nsoak: %s at %d readings/s\n\n", duration, rate)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "min\tRSS MiB\tgoroutines\tfds\tdb MiB\treadings\treadings/s\toutages\tSMS\tspool MiB\t")
	for i, r := range rows {
		rps := 0.0
		if i > 0 {
			rps = float64(r.readings-rows[i-1].readings) / (r.at - rows[i-1].at).Seconds()
		}
		fmt.Fprintf(w, "%.1f\t%.1f\t%.0f\t%d\t%.2f\t%d\t%.0f\t%d\t%d\t%.1f\t\n",
			r.at.Minutes(), r.rssMiB, r.goroutines, r.fds, r.dbMiB, r.readings, rps, r.outages, r.sms, r.spoolMiB)
	}
	w.Flush()
}
