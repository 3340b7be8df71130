// Command storm is the rules' end-to-end storm load (issue 5): a synthetic
// fleet imported into the real contacts registry, a burst of power_off last
// gasps stamped within 60 s fed through rules.Engine.Handle by concurrent
// callers (group commit), then the momentary windows closing at once and
// every outage intent written to notify's outbox in the store. It prints
// one table of figures.
//
//	go run ./bench/storm -customers 1000000 -areas 10000 -events 400000
//
// With -cluster-forwarders N (PostgreSQL only) the events take distributed
// mode's path instead (cluster.go): N forwarders to the meter topic of an
// in-process kfake broker, consumed by the rules under the cluster-rules
// lease and fence.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/contacts"
	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/clock"
	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/fleet"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

type result struct{ name, value, target string }

func main() {
	customers := flag.Int("customers", 1_000_000, "meters in the fleet")
	areas := flag.Int("areas", 10_000, "transformer areas")
	events := flag.Int("events", 400_000, "power_off last gasps within 60 s")
	share := flag.Float64("gasp-share", 0.8, "share of an out area's meters whose last gasp arrives")
	workers := flag.Int("workers", 8, "concurrent Handle callers (MQTT workers)")
	batch := flag.Int("batch", 500, "events per Handle call")
	verify := flag.Int("verify", 100_000, "meters in the outage whose verification is timed")
	paced := flag.Bool("paced", false, "feed the last gasps at their own pace on the wall clock (60 s) and let the engine's ticker close the windows, instead of all at once on a fake clock")
	sinkName := flag.String("sink", "notify", "where intents go: notify (its outbox) or bulk (multi-row INSERTs into a table of the program's own, without the outbox's work)")
	driver := flag.String("driver", "sqlite", "store driver: sqlite or postgres")
	dsn := flag.String("dsn", "", "store DSN (postgres)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the storm run to this file")
	forwarders := flag.Int("cluster-forwarders", 0, "distributed mode: this many forwarder instances write the events to the meter topic of an in-process kfake broker, and the rules consume it under the cluster-rules lease (postgres only); 0: single process, the callers hand events to the rules")
	partitions := flag.Int("cluster-partitions", ingest.DefaultMeterPartitions, "distributed mode: partitions of the meter topic")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "storm:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*customers, *areas, *events, *share, *workers, *batch, *verify, *paced, *sinkName, *driver, *dsn, *forwarders, *partitions); err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(customers, areas, events int, share float64, workers, batch, verify int, paced bool, sinkName, driver, dsn string,
	forwarders, partitions int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gridbell-storm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if driver == "postgres" { // a schema of its own, dropped at the end
		drop, err := pgSchema(ctx, &dsn)
		if err != nil {
			return err
		}
		defer drop()
	}
	db, err := store.Open(ctx, store.Config{Driver: driver, DSN: dsn}, dir)
	if err != nil {
		return err
	}
	defer db.Close()
	wal := watchWAL(filepath.Join(dir, "gridbell.db-wal"))
	defer wal.stop()
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	var res []result
	add := func(name, value, target string) { res = append(res, result{name, value, target}) }

	start := time.Now()
	f := fleet.Generate(fleet.Options{Customers: customers, Areas: areas, Seed: 1, PrepaidShare: 0.3})
	reg, err := importFleet(ctx, db, f, log)
	if err != nil {
		return err
	}
	f = nil
	add("contacts registry import", fmt.Sprintf("%d meters in %s", reg.Len(), time.Since(start).Round(time.Millisecond)), "")
	runtime.GC()
	debug.FreeOSMemory()
	rssImport := peakRSS()
	resetPeakRSS()
	walImport := wal.reset()
	if driver != "postgres" {
		// The import is one transaction: its WAL is as large as it is.
		// The storm's figure starts once the checkpointer has cut it back.
		start := time.Now()
		for time.Since(start) < 2*time.Minute {
			if _, w := db.Size(); w < 8<<20 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, w := db.Size()
		add("WAL after the import, cut back by the checkpointer", fmt.Sprintf("%.1f MiB after %s", float64(w)/(1<<20), time.Since(start).Round(time.Millisecond)), "")
		wal.reset()
	}

	var scfg notify.Config
	scfg.OutboxFile = filepath.Join(dir, "outbox.jsonl")
	sender, err := notify.NewSender(scfg, dir, log)
	if err != nil {
		return err
	}
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	var clk clock.Clock
	fake := clock.NewFake(t0.Add(60 * time.Second))
	clk = fake
	cfg := rules.Config{Tick: time.Hour} // burst: the program ticks by hand
	if paced {
		t0 = time.Now().Add(time.Second)
		clk, cfg.Tick = clock.Real{}, 0
	}
	cfg.Defaults()
	outbox, err := notify.NewOutbox(scfg, notify.QuietHours{}, db, reg, sender, clk, log)
	if err != nil {
		return err
	}
	var sink rules.IntentSink = outbox
	table := "notify_intents"
	if sinkName == "bulk" {
		if sink, err = newBulkSink(ctx, db); err != nil {
			return err
		}
		table = "storm_outbox"
	}
	start = time.Now()
	eng, err := rules.New(cfg, db, reg, sink, clk, log)
	if err != nil {
		return err
	}
	add("rules start (empty store)", time.Since(start).Round(time.Millisecond).String(), "")
	pipe, mode := single(eng), "single process"
	if forwarders > 0 {
		if pipe, err = clusterPipeline(ctx, db, eng, reg, forwarders, partitions, log); err != nil {
			return err
		}
		mode = fmt.Sprintf("distributed: %d forwarder(s) → kfake meter topic (%d partitions) → rules under lease and fence", forwarders, partitions)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(rctx) }()
	defer func() { stop(); <-done }()
	defer pipe.close()

	evs, out := gasps(reg, areas, events, share, t0)
	want := affectedAccounts(reg, out)
	add("events fed (power_off)", fmt.Sprintf("%d in %d areas, %d callers × %d per input, %d input(s)", len(evs), len(out), workers, batch, len(pipe.in)), "")
	// A bulk of intents is logged in the rules' transaction and unpacked
	// into notify_intents by the dispatcher, which this program does not
	// run: it unpacks them itself (notify's intentlog.go).
	unpack := func() (int, error) { return 0, nil }
	if sinkName == "notify" {
		unpack = func() (int, error) { return outbox.Unpack(ctx) }
	}
	if paced {
		// The dispatcher unpacks as intents are logged, a row a step.
		uctx, stopUnpack := context.WithCancel(ctx)
		unpacked := make(chan struct{})
		go func() {
			defer close(unpacked)
			for uctx.Err() == nil {
				if n, err := unpack(); err != nil || n == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
		err := runPaced(ctx, eng, pipe, db, table, evs, workers, batch, cfg.Momentary, want, add)
		stopUnpack()
		<-unpacked
		if err != nil {
			return err
		}
	} else {
		if err := runBurst(ctx, eng, pipe, evs, workers, batch, fake, t0, cfg.Momentary, add); err != nil {
			return err
		}
		start := time.Now()
		n, err := unpack()
		if err != nil {
			return err
		}
		add("then every logged intent unpacked into notify_intents (the dispatcher's work)", fmt.Sprintf("%d in %s", n, time.Since(start).Round(time.Millisecond)), "")
	}
	var nOut, nDigest int
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE kind = 'outage'`).Scan(&nOut)
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE kind = 'manager_digest'`).Scan(&nDigest)
	add("outage intents in the outbox", fmt.Sprintf("%d of %d affected accounts", nOut, want), "all")
	add("manager digests", fmt.Sprintf("%d (storm mode %v)", nDigest, eng.StormMode()), "one per grid")

	id, n, err := bigOutage(ctx, pipe, len(evs), reg, areas, verify, clk.Now())
	if err != nil {
		return err
	}
	v, took := timeVerification(eng, id)
	add("verification", fmt.Sprintf("%d meters (%d restored, %d dark, %d unknown) in %s", n, len(v.Restored), len(v.Dark), len(v.Unknown), took), "< 100 ms")
	add("peak RSS, storm run (registry resident)", fmt.Sprintf("%d MiB", peakRSS()>>20), "< 2048 MiB")
	add("peak RSS, fleet generation + directory", fmt.Sprintf("%d MiB", rssImport>>20), "")
	if driver != "postgres" {
		var dbSize int64
		if fi, err := os.Stat(filepath.Join(dir, "gridbell.db")); err == nil {
			dbSize = fi.Size()
		}
		add("SQLite WAL peak, storm run", fmt.Sprintf("%.1f MiB", float64(wal.reset())/(1<<20)), fmt.Sprintf("≤ %d MiB", store.WALBound>>20))
		add("SQLite WAL peak, contacts import (one transaction)", fmt.Sprintf("%.1f MiB", float64(walImport)/(1<<20)), "")
		add("SQLite database at the end", fmt.Sprintf("%.1f MiB", float64(dbSize)/(1<<20)), "")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "storm: %d customers, %d areas, store %s, sink %s, %s, GOMAXPROCS %d\n", customers, areas, driver, sinkName, mode, runtime.GOMAXPROCS(0))
	fmt.Fprintln(tw, "figure\tvalue\ttarget")
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, r.value, r.target)
	}
	return tw.Flush()
}

// pgSchema creates a fresh schema on the server of *dsn and points *dsn at
// it; drop removes it.
func pgSchema(ctx context.Context, dsn *string) (drop func(), err error) {
	admin, err := store.Open(ctx, store.Config{Driver: "postgres", DSN: *dsn}, "")
	if err != nil {
		return nil, err
	}
	schema := fmt.Sprintf("storm_%x", rand.Uint64())
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return nil, err
	}
	sep := "?"
	if strings.Contains(*dsn, "?") {
		sep = "&"
	}
	*dsn += sep + "search_path=" + schema
	return func() {
		admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	}, nil
}

// importFleet generates the fleet and imports it through a pipe, so the
// CSV is never held whole.
func importFleet(ctx context.Context, db *store.DB, f *fleet.Fleet, log zerolog.Logger) (*contacts.Registry, error) {
	reg, err := contacts.Open(ctx, db, log)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(f.WriteCSV(pw, false)) }()
	var rejects bytes.Buffer
	if _, err := reg.Import(ctx, pr, &rejects); err != nil {
		return nil, err
	}
	return reg, nil
}

// gasps picks whole areas until events last gasps are drawn: share of each
// area's meters gasps, stamped uniformly within 60 s, in time order.
func gasps(reg *contacts.Registry, areas, events int, share float64, t0 time.Time) ([]event.Event, []string) {
	rng := rand.New(rand.NewPCG(7, 7))
	var evs []event.Event
	var out []string
	for _, a := range rng.Perm(areas) {
		if len(evs) >= events {
			break
		}
		name := fmt.Sprintf("TA-%04d", a+1)
		out = append(out, name)
		for _, m := range reg.AreaMeters(name) {
			if rng.Float64() < share {
				ts := t0.Add(time.Duration(rng.Int64N(int64(60 * time.Second))))
				evs = append(evs, event.Event{Meter: &event.MeterEvent{Meter: m, TS: ts, Type: event.PowerOff}})
			}
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Meter.TS.Before(evs[j].Meter.TS) })
	return evs, out
}

// runBurst feeds every gasp as fast as the engine takes them, then closes
// every momentary window at once: the worst case.
func runBurst(ctx context.Context, eng *rules.Engine, pipe *pipeline, evs []event.Event, workers, batch int, clk *clock.Fake, t0 time.Time,
	momentary time.Duration, add func(string, string, string)) error {
	start := time.Now()
	if err := feed(ctx, pipe, evs, workers, batch, false); err != nil {
		return err
	}
	if pipe.settled != nil {
		took := time.Since(start)
		add("events forwarded (Kafka acked)", fmt.Sprintf("%.0f events/s (%s)", float64(len(evs))/took.Seconds(), took.Round(time.Millisecond)), "")
	}
	if err := pipe.wait(ctx, len(evs)); err != nil {
		return err
	}
	took := time.Since(start)
	if pipe.batches != nil {
		b := pipe.batches()
		add("rules commits from the meter topic", fmt.Sprintf("%d, %.0f events each", b, float64(len(evs))/float64(max(b, 1))), "")
	}
	add("event processing", fmt.Sprintf("%.0f events/s (%s)", float64(len(evs))/took.Seconds(), took.Round(time.Millisecond)), "≥ 100000 events/s")
	clk.Set(t0.Add(60*time.Second + momentary + time.Second)) // every window has closed
	tick := time.Now()
	if err := eng.Tick(ctx); err != nil {
		return err
	}
	add("all windows close at once → every outage intent committed (logged)", time.Since(tick).Round(time.Millisecond).String(), "< 5 s")
	add("first event fed → every outage intent committed", (took + time.Since(tick)).Round(time.Millisecond).String(), "")
	return nil
}

// runPaced feeds each gasp when the wall clock reaches its stamp and lets
// the engine's own ticker take the decisions as windows close.
func runPaced(ctx context.Context, eng *rules.Engine, pipe *pipeline, db *store.DB, table string, evs []event.Event, workers, batch int,
	momentary time.Duration, want int, add func(string, string, string)) error {
	if err := feed(ctx, pipe, evs, workers, batch, true); err != nil {
		return err
	}
	lastClose := evs[len(evs)-1].Meter.TS.Add(momentary)
	time.Sleep(time.Until(lastClose))
	for {
		var n int
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE kind = 'outage'`).Scan(&n)
		if n >= want || time.Since(lastClose) > time.Minute {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	add("last window closed → every outage intent in the outbox", time.Since(lastClose).Round(time.Millisecond).String(), "< 5 s")
	add("worst window close → decision committed", fmt.Sprintf("%.3f s", eng.MaxDecisionLag().Seconds()), "< 5 s")
	return nil
}

// feed sends evs in batches from concurrent callers, as ingest's workers
// do: workers callers for each of the pipeline's inputs (each instance has
// its own workers).
func feed(ctx context.Context, pipe *pipeline, evs []event.Event, workers, batch int, paced bool) error {
	ch := make(chan []event.Event)
	var wg sync.WaitGroup
	callers := workers * len(pipe.in)
	errs := make(chan error, callers)
	for i := range callers {
		h := pipe.in[i%len(pipe.in)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range ch {
				if err := h.Handle(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < len(evs); {
		n := batch
		if paced { // what has "arrived" by now, at most a batch
			time.Sleep(time.Until(evs[i].Meter.TS))
			now := time.Now()
			for n = 1; n < batch && i+n < len(evs) && !evs[i+n].Meter.TS.After(now); n++ {
			}
		}
		j := min(i+n, len(evs))
		ch <- evs[i:j]
		i = j
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func affectedAccounts(reg *contacts.Registry, areas []string) int {
	seen := map[string]bool{}
	for _, a := range areas {
		for _, m := range reg.AreaMeters(a) {
			if mi, ok := reg.Meter(m); ok {
				seen[mi.Account] = true
			}
		}
	}
	return len(seen)
}

// bigOutage has the OMS report one outage over enough whole areas to hold
// n meters (absorbing the AMI records there), through the pipeline after
// sent events, and returns its id.
func bigOutage(ctx context.Context, pipe *pipeline, sent int, reg *contacts.Registry, areas, n int, now time.Time) (string, int, error) {
	var scope []string
	total := 0
	for a := 1; a <= areas && total < n; a++ {
		name := fmt.Sprintf("TA-%04d", a)
		scope = append(scope, name)
		total += len(reg.AreaMeters(name))
	}
	start := now.Add(-2 * time.Minute)
	id := "OMS-STORM-1"
	err := pipe.in[0].Handle(ctx, []event.Event{{Outage: &event.OMSOutage{OutageID: id, Kind: event.OutageFault,
		Status: event.StatusStarted, Areas: scope, Start: &start, UpdatedAt: now}}})
	if err == nil {
		err = pipe.wait(ctx, sent+1)
	}
	return id, total, err
}

func timeVerification(eng *rules.Engine, id string) (rules.Verification, time.Duration) {
	var v rules.Verification
	best := time.Hour
	for range 5 {
		start := time.Now()
		v, _ = eng.Verification(id)
		best = min(best, time.Since(start))
	}
	return v, best.Round(time.Microsecond)
}

// peakRSS is VmHWM of this process, in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "VmHWM:"), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS restarts VmHWM from the current RSS (Linux clear_refs 5).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// walWatch samples the size of a SQLite WAL file every 10 ms and keeps the
// largest seen.
type walWatch struct {
	peak atomic.Int64
	done chan struct{}
	wg   sync.WaitGroup
}

func watchWAL(path string) *walWatch {
	w := &walWatch{done: make(chan struct{})}
	w.wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if fi, err := os.Stat(path); err == nil && fi.Size() > w.peak.Load() {
				w.peak.Store(fi.Size())
			}
			select {
			case <-w.done:
				return
			case <-t.C:
			}
		}
	})
	return w
}

// reset returns the peak so far and starts a new one.
func (w *walWatch) reset() int64 { return w.peak.Swap(0) }

func (w *walWatch) stop() {
	close(w.done)
	w.wg.Wait()
}
