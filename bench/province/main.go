// Command province is distributed mode at a province's scale (issue 19):
// three gridbell processes in distributed mode on one PostgreSQL and an
// in-process kfake broker, N customers (100 to a transformer area), a
// storm of N/10 power_off last gasps (whole areas) written to the meter
// topic by the forwarder the instances use, and the instance running the
// rules SIGKILLed half-way through, never restarted. It prints one table,
// then one figure a line (`name: value`) for scripts: intents_s is from the
// last gasp written until every outage intent is committed to the outbox
// (logged in notify_intent_log or unpacked into notify_intents), unpacked_s
// until every one is in notify_intents; lost counts the phones without an
// outage SMS in any instance's outbox file when -sms-wait ran out (unsent
// then, as much as lost), doubled the repeats.
//
//	CUSTOMERS=2000000 make bench-province
//	go run ./bench/province -customers 2000000
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify"
)

const perArea = 100

func main() {
	customers := flag.Int("customers", 2_000_000, "customers (one meter and one mobile phone each)")
	dsn := flag.String("dsn", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL (a schema of the run's own is created and dropped)")
	mqtt := flag.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker the instances connect to (they get no MQTT input)")
	wait := flag.Duration("sms-wait", 15*time.Minute, "how long to wait for every outage intent, then for every outage SMS sent (lost counts the phones without one then)")
	keep := flag.Bool("keep", false, "keep the schema and the work directory")
	flag.Parse()
	if err := run(*customers, *dsn, *mqtt, *wait, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "province:", err)
		os.Exit(1)
	}
}

// proc is one gridbell process.
type proc struct {
	name, listen, dir string
	cmd               *exec.Cmd
	done              chan struct{}
	peakRSS           atomic.Int64 // KiB, VmHWM, sampled while it runs
	cpu               atomic.Int64 // clock ticks (user+system), sampled
}

func run(customers int, dsn, mqtt string, smsWait time.Duration, keep bool) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "province")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	fmt.Fprintf(os.Stderr, "province: %d customers, work directory %s\n", customers, work)
	bin := filepath.Join(work, "gridbell")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/gridbell").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	schema := fmt.Sprintf("province_%x", rand.Uint32())
	admin, err := store.Open(ctx, store.Config{Driver: "postgres", DSN: dsn}, "")
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return err
	}
	if !keep {
		defer admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	}
	sdsn := dsn + "&search_path=" + schema
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "oms.outages", "billing.accounts"))
	if err != nil {
		return err
	}
	defer kc.Close()
	contactsFile := filepath.Join(work, "contacts.csv")
	if err := writeFleet(contactsFile, customers); err != nil {
		return err
	}
	prefix := fmt.Sprintf("pv%x", rand.Uint32())
	env := func(name, listen string) []string {
		return append(os.Environ(),
			"GRIDBELL_DATA_DIR="+filepath.Join(work, name),
			"GRIDBELL_CONTACTS_FILE="+contactsFile,
			"GRIDBELL_HTTP_LISTEN="+listen,
			"GRIDBELL_MQTT_BROKERS="+mqtt,
			"GRIDBELL_MQTT_TOPIC_PREFIX="+prefix,
			"GRIDBELL_MQTT_CLIENT_ID="+prefix+"-"+name,
			"GRIDBELL_MQTT_SHARED_GROUP="+prefix,
			"GRIDBELL_KAFKA_BROKERS="+strings.Join(kc.ListenAddrs(), ","),
			"GRIDBELL_KAFKA_GROUP="+prefix,
			"GRIDBELL_CLUSTER_ENABLED=true",
			"GRIDBELL_CLUSTER_INSTANCE="+name,
			"GRIDBELL_CLUSTER_METER_TOPIC="+prefix+".meter-events",
			"GRIDBELL_STORE_DRIVER=postgres",
			"GRIDBELL_STORE_DSN="+sdsn,
			"GRIDBELL_RULES_MOMENTARY=2s",
			"GRIDBELL_QUIET_HOURS_ENABLED=false",
			"GRIDBELL_SMS_PHONE_HOURLY=-1",
			"GRIDBELL_SMS_TWILIO_RATE=100000",
			"GRIDBELL_LOG_LEVEL=warn",
		)
	}
	procs := map[string]*proc{}
	var mu sync.Mutex
	spawn := func(name string) (*proc, error) {
		listen, err := freePort()
		if err != nil {
			return nil, err
		}
		p := &proc{name: name, listen: listen, dir: filepath.Join(work, name), done: make(chan struct{})}
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return nil, err
		}
		logf, err := os.Create(filepath.Join(work, name+".log"))
		if err != nil {
			return nil, err
		}
		p.cmd = exec.Command(bin, "run")
		p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = env(name, listen), logf, logf
		if err := p.cmd.Start(); err != nil {
			return nil, err
		}
		go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
		mu.Lock()
		procs[name] = p
		mu.Unlock()
		return p, nil
	}
	defer func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			<-p.done
		}
	}()
	stopSampling := sample(procs, &mu)
	defer stopSampling()

	// The first instance imports the contacts and is ready; then the others.
	began := time.Now()
	p1, err := spawn("p1")
	if err != nil {
		return err
	}
	if err := waitFor("p1 ready", 30*time.Minute, p1, p1.ready); err != nil {
		return err
	}
	importS := time.Since(began).Seconds()
	for _, n := range []string{"p2", "p3"} {
		p, err := spawn(n)
		if err != nil {
			return err
		}
		if err := waitFor(n+" ready", 30*time.Minute, p, p.ready); err != nil {
			return err
		}
	}
	db, err := store.Open(ctx, store.Config{Driver: "postgres", DSN: sdsn}, "")
	if err != nil {
		return err
	}
	defer db.Close()
	holder := func() string {
		var h string
		db.QueryRowContext(ctx, `SELECT holder FROM store_leases WHERE name = 'cluster-rules'`).Scan(&h)
		name, _, _ := strings.Cut(h, " ")
		return name
	}
	if err := waitFor("an instance running the rules", time.Minute, nil, func() bool { return holder() != "" }); err != nil {
		return err
	}
	leader := holder()
	fmt.Fprintf(os.Stderr, "province: all ready after %.0f s; %s runs the rules\n", time.Since(began).Seconds(), leader)
	time.Sleep(5 * time.Second) // copies settle; their CPU from here on is what keeping up costs
	idleCPU := map[string]int64{}
	for n, p := range procs {
		idleCPU[n] = p.cpu.Load()
	}
	idleFrom := time.Now()
	time.Sleep(20 * time.Second)
	idleSecs := time.Since(idleFrom).Seconds()
	idleCopyCPU := 0.0
	for n, p := range procs {
		if n != leader {
			idleCopyCPU = max(idleCopyCPU, float64(p.cpu.Load()-idleCPU[n])/clkTck/idleSecs)
		}
	}

	// The storm: N/10 meters of whole areas lose power, written to the
	// meter topic as the instances forward their input.
	fwd, err := ingest.NewForwarder(ingest.KafkaConfig{Brokers: kc.ListenAddrs()}, prefix+".meter-events")
	if err != nil {
		return err
	}
	defer fwd.Close()
	out := customers / 10
	lagMax := map[string]float64{}
	stopLag := watchLag(procs, &mu, leader, lagMax)
	stormCPU := map[string]int64{}
	for n, p := range procs {
		stormCPU[n] = p.cpu.Load()
	}
	stormFrom := time.Now()
	var killedAt time.Time
	var sentN atomic.Int64
	const batch, workers = 500, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := w * batch; from < out; from += workers * batch {
				evs := make([]event.Event, 0, batch)
				for k := from; k < min(from+batch, out); k++ {
					evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: meterID(k), Type: event.PowerOff, TS: stormFrom}, Source: "mqtt", Received: time.Now()})
				}
				if err := fwd.Handle(ctx, evs); err != nil {
					errs <- err
					return
				}
				sentN.Add(int64(len(evs)))
			}
		}()
	}
	for sentN.Load() < int64(out/2) {
		time.Sleep(10 * time.Millisecond)
	}
	procs[leader].cmd.Process.Kill() // SIGKILL
	killedAt = time.Now()
	fmt.Fprintf(os.Stderr, "province: SIGKILLed %s after %d of %d power_off\n", leader, sentN.Load(), out)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	lastGasp := time.Now()
	var successor string
	if err := waitFor("a successor applying events", 5*time.Minute, nil, func() bool {
		if h := holder(); h != "" && h != leader {
			successor = h
			return metric(procs[h], "gridbell_cluster_consumed_events_total") > 0
		}
		return false
	}); err != nil {
		return err
	}
	takeoverS := time.Since(killedAt).Seconds()
	fmt.Fprintf(os.Stderr, "province: %s applies events %.1f s after the SIGKILL\n", successor, takeoverS)
	// intents_s: every outage intent committed to the outbox, logged
	// (notify_intent_log) or unpacked (notify_intents); unpacked_s: every
	// one unpacked into notify_intents, where the dispatcher expands them.
	intentsS, unpackedS := -1.0, -1.0
	if err := waitFor("every outage intent in the outbox", smsWait, nil, func() bool {
		n, err := notify.CountIntents(ctx, db, event.KindOutage)
		return err == nil && n >= out
	}); err == nil {
		intentsS = time.Since(lastGasp).Seconds()
	}
	fmt.Fprintf(os.Stderr, "province: every outage intent in the outbox %.1f s after the last gasp (written %.1f s after the first)\n", intentsS, lastGasp.Sub(stormFrom).Seconds())
	if err := waitFor("every outage intent unpacked", smsWait, nil, func() bool {
		var n int
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_intents WHERE kind = 'outage'`).Scan(&n)
		return n >= out
	}); err == nil {
		unpackedS = time.Since(lastGasp).Seconds()
	}
	fmt.Fprintf(os.Stderr, "province: every outage intent unpacked into notify_intents %.1f s after the last gasp\n", unpackedS)
	var lost, doubled int
	err = waitFor("every outage SMS sent", smsWait, nil, func() bool {
		lost, doubled = countSMS(work, out)
		return lost == 0
	})
	stopLag()
	stormSecs := time.Since(stormFrom).Seconds()
	copyCPU := 0.0
	for n, p := range procs {
		if n != leader && n != successor {
			copyCPU = max(copyCPU, float64(p.cpu.Load()-stormCPU[n])/clkTck/stormSecs)
		}
	}
	time.Sleep(3 * time.Second) // anything sent twice late shows up
	lost, doubled = countSMS(work, out)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "instance\trole\tpeak RSS MiB\tcopy lag max s\n")
	rssMax := 0.0
	lagAll := 0.0
	for _, n := range []string{"p1", "p2", "p3"} {
		p := procs[n]
		role := "copy"
		switch n {
		case leader:
			role = "rules (SIGKILLed)"
		case successor:
			role = "copy, then rules"
		}
		rss := float64(p.peakRSS.Load()) / 1024
		rssMax = max(rssMax, rss)
		lagAll = max(lagAll, lagMax[n])
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\n", n, role, rss, lagMax[n])
	}
	tw.Flush()
	fmt.Println()
	for _, f := range [][2]string{
		{"customers", strconv.Itoa(customers)},
		{"storm_power_off", strconv.Itoa(out)},
		{"import_s", fmt.Sprintf("%.1f", importS)},
		{"rss_max_mib", fmt.Sprintf("%.0f", rssMax)},
		{"rss_per_customer_bytes", fmt.Sprintf("%.0f", rssMax*(1<<20)/float64(customers))},
		{"takeover_s", fmt.Sprintf("%.1f", takeoverS)},
		{"copy_lag_max_s", fmt.Sprintf("%.1f", lagAll)},
		{"copy_cpu_idle_cores", fmt.Sprintf("%.3f", idleCopyCPU)},
		{"copy_cpu_storm_cores", fmt.Sprintf("%.3f", copyCPU)},
		{"storm_write_s", fmt.Sprintf("%.1f", lastGasp.Sub(stormFrom).Seconds())},
		{"intents_s", fmt.Sprintf("%.1f", intentsS)},
		{"unpacked_s", fmt.Sprintf("%.1f", unpackedS)},
		{"lost", strconv.Itoa(lost)},
		{"doubled", strconv.Itoa(doubled)},
	} {
		fmt.Printf("%s: %s\n", f[0], f[1])
	}
	return err
}

// meterID is customer k's meter; customers k < N/10 fill whole areas.
func meterID(k int) string { return fmt.Sprintf("35%010d", k) }

// phone is customer k's mobile number (E.164).
func phone(k int) string { return fmt.Sprintf("+86137%08d", 10_000_000+k) }

func writeFleet(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("account,name,meter,concentrator,area,feeder,grid,manager,manager_phone,class,prepaid,phone,language\n")
	for k := range n {
		a := k / perArea
		fmt.Fprintf(w, "P%010d,C%d,%s,CP-%06d,TP-%06d,FP-%04d,G%03d,,,resident,false,%s,zh\n", k, k, meterID(k), a, a, a/50, a/1000, phone(k)[3:])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// countSMS counts the outage SMS per phone over every instance's outbox
// file: phones of the storm that got none, and repeats.
func countSMS(work string, out int) (lost, doubled int) {
	got := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(work, "p*", "outbox.jsonl"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		} else {
			b = nil
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l struct{ To, Kind string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Kind == "outage" {
				got[l.To]++
			}
		}
	}
	for k := range out {
		c := got[phone(k)]
		if c == 0 {
			lost++
		}
		doubled += max(c-1, 0)
	}
	return lost, doubled
}

const clkTck = 100 // USER_HZ on Linux

// every runs f now and every d until the returned stop is called; stop
// returns once f has.
func every(d time.Duration, f func()) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f()
			select {
			case <-quit:
				return
			case <-time.After(d):
			}
		}
	}()
	return func() { close(quit); <-done }
}

// sample reads each live process's peak RSS and CPU every 500 ms.
func sample(procs map[string]*proc, mu *sync.Mutex) func() {
	return every(500*time.Millisecond, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range procs {
			select {
			case <-p.done:
				continue
			default:
			}
			pid := p.cmd.Process.Pid
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
						p.peakRSS.Store(max(p.peakRSS.Load(), kb))
					}
				}
			}
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
				s := string(b)
				if i := strings.LastIndexByte(s, ')'); i >= 0 {
					f := strings.Fields(s[i+2:])
					if len(f) > 12 {
						u, _ := strconv.ParseInt(f[11], 10, 64)
						st, _ := strconv.ParseInt(f[12], 10, 64)
						p.cpu.Store(u + st)
					}
				}
			}
		}
	})
}

// watchLag keeps, per instance that does not run the rules, the largest
// copy lag its /metrics reports, every 500 ms.
func watchLag(procs map[string]*proc, mu *sync.Mutex, leader string, lagMax map[string]float64) func() {
	return every(500*time.Millisecond, func() {
		for n, p := range procs {
			if n == leader {
				continue
			}
			if v := metric(p, "gridbell_cluster_copy_lag_seconds"); v >= 0 {
				mu.Lock()
				lagMax[n] = max(lagMax[n], v)
				mu.Unlock()
			}
		}
	})
}

// metric reads one unlabelled series from p's /metrics; -1 if it cannot.
func metric(p *proc, name string) float64 {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.listen + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func (p *proc) ready() bool {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.listen + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// waitFor polls cond every 200 ms for up to d; p, when set, must not exit.
func waitFor(what string, d time.Duration, p *proc, cond func() bool) error {
	deadline := time.Now().Add(d)
	for {
		// The waits count rows in tables of millions: look at most a fifth
		// of the time, so the looking does not slow what it times.
		t0 := time.Now()
		if cond() {
			return nil
		}
		took := time.Since(t0)
		if p != nil {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited while waiting for %s (see its log)", p.name, what)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(max(200*time.Millisecond, 4*took))
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
