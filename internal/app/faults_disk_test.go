//go:build faults

package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/faults"
	"github.com/gridbell/gridbell/internal/metrics"
	"github.com/gridbell/gridbell/internal/store"
)

// diskFleet is the full-disk test's fleet: areas of diskPerArea customers,
// one meter each, numbered as the fault fleet's.
const diskPerArea = 30

// diskRun is the service on a small disk, and what it reads and writes.
type diskRun struct {
	t       *testing.T
	n       int // customers
	cfg     *config.Config
	dataDir string
	outbox  string
	pub     paho.Client
	prefix  string

	app    *app.App
	cancel context.CancelFunc
	done   chan error
}

func newDiskRun(t *testing.T, n int, dataDir string) *diskRun {
	t.Helper()
	broker := faults.StartMosquitto(t)
	dir := t.TempDir()
	var b bytes.Buffer
	b.WriteString("account,meter,concentrator,area,grid,manager,manager_phone,class,phone\n")
	for k := range n {
		a := k / diskPerArea
		fmt.Fprintf(&b, "01%08d,33%010d,C-%03d,TA-%03d,G%02d,mgr,13900000000,resident,138%08d\n", k, k, a, a, a%4, k+1)
	}
	contacts := filepath.Join(dir, "contacts.csv")
	if err := os.WriteFile(contacts, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("disk%d", time.Now().UnixNano())
	cfg, err := config.Load("", []string{
		"GRIDBELL_DATA_DIR=" + dataDir,
		"GRIDBELL_CONTACTS_FILE=" + contacts,
		"GRIDBELL_HTTP_LISTEN=" + freePort(t),
		"GRIDBELL_MQTT_BROKERS=" + broker.URL(),
		"GRIDBELL_MQTT_CLIENT_ID=" + prefix,
		"GRIDBELL_MQTT_TOPIC_PREFIX=" + prefix,
		"GRIDBELL_RULES_MOMENTARY=2s",
		"GRIDBELL_QUIET_HOURS_ENABLED=false",
		"GRIDBELL_CONTACTS_REFRESH=0s",
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := paho.NewClientOptions().AddBroker(broker.URL()).SetClientID(prefix + "-pub").SetCleanSession(false)
	pub := paho.NewClient(opts)
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { pub.Disconnect(100) })
	r := &diskRun{t: t, n: n, cfg: cfg, dataDir: dataDir, outbox: filepath.Join(dataDir, "outbox.jsonl"), pub: pub, prefix: prefix}
	t.Cleanup(func() { r.stop() })
	return r
}

// start starts the service in this process, waits until it is ready and
// returns app.New's error.
func (r *diskRun) start() error {
	if err := r.launch(); err != nil {
		return err
	}
	waitFor(r.t, "readiness", 30*time.Second, func() bool { return r.app.Ready() == nil })
	return nil
}

// launch starts the service in this process without waiting for it to be
// ready (on a nearly full disk it starts but is not ready until there is
// room) and returns app.New's error.
func (r *diskRun) launch() error {
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, r.cfg, zerolog.New(zerolog.NewTestWriter(r.t)).Level(zerolog.WarnLevel))
	if err != nil {
		cancel()
		return err
	}
	r.app, r.cancel, r.done = a, cancel, make(chan error, 1)
	go func() { r.done <- a.Run(ctx) }()
	return nil
}

// stop stops the service if it runs.
func (r *diskRun) stop() {
	if r.app == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("Run() = %v", err)
	}
	r.app = nil
}

// burst publishes one meter event of typ for every meter, at ts, each one
// message at QoS 1.
func (r *diskRun) burst(typ string, ts time.Time) {
	for k := range r.n {
		m := fmt.Sprintf("33%010d", k)
		b, _ := json.Marshal(map[string]any{"meter": m, "ts": ts.Format(time.RFC3339), "type": typ})
		if tok := r.pub.Publish(fmt.Sprintf("%s/C-%03d/%s/event", r.prefix, k/diskPerArea, m), 1, false, b); tok.Wait() && tok.Error() != nil {
			r.t.Fatal(tok.Error())
		}
	}
}

// waitSMS waits until every customer has a kind SMS, or d passes.
func (r *diskRun) waitSMS(kind string, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		got := len(count(readOutbox(r.t, r.outbox), kind, ""))
		if got >= r.n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// verdict counts lost and duplicated SMS of kind: none may be either.
func (r *diskRun) verdict(kind string) {
	r.t.Helper()
	got := count(readOutbox(r.t, r.outbox), kind, "")
	lost, dup := 0, 0
	for k := range r.n {
		switch c := got[fmt.Sprintf("+86138%08d", k+1)]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	r.t.Logf("%s SMS: lost %d, duplicated %d of %d", kind, lost, dup, r.n)
	if lost != 0 || dup != 0 {
		r.t.Errorf("%s SMS: lost %d, duplicated %d of %d; want none", kind, lost, dup, r.n)
	}
}

// storeSize is the size of the SQLite database and its WAL under dataDir.
func storeSize(dataDir string) (db, wal int64) {
	if fi, err := os.Stat(filepath.Join(dataDir, "gridbell.db")); err == nil {
		db = fi.Size()
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "gridbell.db-wal")); err == nil {
		wal = fi.Size()
	}
	return db, wal
}

// TestFaultDiskFullStorm puts data_dir on a 64 MB tmpfs under a storm of
// 3,000 customers: the whole fleet goes dark, and once the outage SMS are
// out the disk is filled and the power_on burst arrives. While the disk is
// full /readyz says so; once space returns every customer gets exactly one
// restored SMS, with no reload on the way. Then the disk is filled again
// and the service restarted on it: the start must say how much space it
// needs, and start once exactly that much is freed.
func TestFaultDiskFullStorm(t *testing.T) {
	const n = 3000
	disk := faults.SmallDisk(t, 64<<20)
	r := newDiskRun(t, n, filepath.Join(disk, "data"))
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	var walPeak atomic.Int64
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if _, wal := storeSize(r.dataDir); wal > walPeak.Load() {
				walPeak.Store(wal)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	reloads0 := metrics.Default.Sum("gridbell_rules_reloads_total")
	retries0 := metrics.Default.Sum("gridbell_rules_commit_retries_total")

	r.burst("power_off", time.Now())
	if got := r.waitSMS("outage", 2*time.Minute); got < n {
		t.Fatalf("%d of %d outage SMS before the disk filled", got, n)
	}
	db, wal := storeSize(r.dataDir)
	t.Logf("outage SMS out: db %d bytes, WAL %d bytes (peak %d)", db, wal, walPeak.Load())

	free := faults.Fill(t, disk)
	r.burst("power_on", time.Now())
	time.Sleep(3 * time.Second)
	notReady := r.app.Ready()
	restoredFull := len(count(readOutbox(t, r.outbox), "restored", ""))
	free()
	t0 := time.Now()
	waitFor(t, "readiness after space returned", 30*time.Second, func() bool { return r.app.Ready() == nil })
	t.Logf("disk full 3 s with the power_on burst: readyz said %v, %d restored SMS out; ready %s after space returned", notReady, restoredFull, time.Since(t0))
	if notReady == nil {
		t.Error("ready while the disk was full")
	}
	got := r.waitSMS("restored", 2*time.Minute)
	reloads := metrics.Default.Sum("gridbell_rules_reloads_total") - reloads0
	retries := metrics.Default.Sum("gridbell_rules_commit_retries_total") - retries0
	t.Logf("%d of %d restored SMS %s after space returned; rules commit retries %v, reloads %v", got, n, time.Since(t0), retries, reloads)
	if reloads != 0 {
		t.Errorf("%v rules reloads on a full disk that still reads; want none", reloads)
	}

	// a restart on a full disk
	free = faults.Fill(t, disk)
	r.stop()
	if err := r.launch(); err != nil {
		var need int64
		if m := regexp.MustCompile(`free (\d+) more bytes`).FindStringSubmatch(err.Error()); m != nil {
			need, _ = strconv.ParseInt(m[1], 10, 64)
		}
		t.Logf("start on the full disk: %v", err)
		if need <= 0 {
			t.Fatalf("a start on the full disk failed without saying how much space it needs: %v", err)
		}
		filler := filepath.Join(disk, "filler")
		fi, err := os.Stat(filler)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filler, fi.Size()-need); err != nil {
			t.Fatal(err)
		}
		if err := r.start(); err != nil {
			t.Fatalf("cannot start with the %d bytes it asked for freed: %v", need, err)
		}
		t.Logf("started once the %d bytes it asked for were freed", need)
	} else {
		t.Logf("started on the full disk: %v", r.app.Ready())
	}
	free()
	waitFor(t, "readiness once space returned", 30*time.Second, func() bool { return r.app.Ready() == nil })

	time.Sleep(2 * time.Second) // anything wrongly queued shows up
	close(stopWatch)
	<-watched
	db, wal = storeSize(r.dataDir)
	t.Logf("end: db %d bytes, WAL %d bytes, WAL peak %d bytes", db, wal, walPeak.Load())
	if walPeak.Load() >= store.WALBound {
		t.Errorf("the WAL reached %d bytes, want it under store.WALBound (%d)", walPeak.Load(), store.WALBound)
	}
	r.verdict("outage")
	r.verdict("restored")
}
